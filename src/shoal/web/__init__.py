"""The web service: REST API, web UI and the job service behind them (``shoal serve``).

Needs the ``web`` extra: ``pip install 'shoal[web]'``.
"""

from shoal.web.app import create_app
from shoal.web.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
