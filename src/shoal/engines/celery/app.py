"""The Celery application both sides share: JSON only, late acks, one message prefetched.

Plain Celery configuration a Celery user would recognise, so Flower and `celery inspect` work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from shoal.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from celery import Celery

BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")
TASK = "shoal.chunk"
INFO_COMMAND = "shoal_info"
ANY_VERSION = "any"  #: the queue suffix of workers started without a project: they serve any bundle


def queue_name(queue: str, fingerprint: str) -> str:
    """Workers of one code version listen on their own queue, so stale code never gets work."""
    return f"{queue}.{fingerprint}"


def backend_for(broker_url: str) -> str:
    """Results travel back through Redis itself, or as RabbitMQ replies to the coordinator."""
    return broker_url if urlsplit(broker_url).scheme.startswith("redis") else "rpc://"


def make_app(broker_url: str) -> Celery:
    scheme = urlsplit(broker_url).scheme
    if scheme not in BROKER_SCHEMES:
        raise ConfigError(
            f"broker URL {broker_url!r} is not a Redis or RabbitMQ URL (redis://host:6379/0, amqp://user:pass@host//)"
        )
    try:
        from celery import Celery
    except ImportError:
        raise MissingDependencyError("celery", "celery") from None
    app = Celery("shoal", broker=broker_url, backend=backend_for(broker_url), set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # ride out a broker restart
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        task_default_queue="shoal",
    )
    return app
