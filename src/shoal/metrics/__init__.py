"""Prometheus metrics for shoal, as middleware around the coordinator and a hook in workers.

- ``shoal run --metrics-port`` serves the job's series, its embedded workers' series and the
  ledger's jobs by state (``endpoint.RunEndpoint``);
- a `shoal worker` serves its own worker series (``worker.WorkerMetrics.serve`` and ``record``);
- the web service exports ``ledger.JobsCollector`` and feeds ``middleware.MetricsMiddleware``
  for the jobs it runs, on a registry it makes at start-up, served with ``http.asgi_app``.

Registries are made by the process that serves them, never at import; nothing here touches
prometheus_client's default global registry. Names are ``shoal_<thing>_<unit>``; counters end
in ``_total``; labels are few and bounded (pipeline, outcome, stage, worker, state).
``shoal metrics export`` and ``shoal metrics summarize`` turn a Prometheus server's history
into datasets (``export``, ``summarize``).
"""
