"""The runtime inside any worker process, whichever engine started it."""
