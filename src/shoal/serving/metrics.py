"""Prometheus families of online serving: requests, latency, batches, queue depth, model loads."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServingMetrics:
    """One set per server, labelled by pipeline and version (the code's fingerprint)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry()
        labels = ("pipeline", "version")
        self.requests = Counter(
            "shoal_predict_requests",
            "Online predict requests answered, by outcome (ok, rejected, timeout, unavailable)",
            [*labels, "outcome"],
            registry=registry,
        )
        self.inputs = Counter(
            "shoal_predict_inputs",
            "Inputs answered online, by outcome (ok, failed)",
            [*labels, "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "shoal_predict_latency_seconds",
            "Seconds from a request's arrival to its answer",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "shoal_predict_batch_size",
            "Inputs per batch sent to a replica",
            labels,
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.batch_wait = Histogram(
            "shoal_predict_batch_wait_seconds",
            "Seconds the oldest input of a batch waited before the batch was sent",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "shoal_predict_batch_seconds",
            "Seconds a batch took on its replica, send to answer",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue = Gauge("shoal_predict_queue_depth", "Inputs waiting for a batch", labels, registry=registry)
        self.replicas = Gauge("shoal_predict_replicas", "Replicas ready to serve", labels, registry=registry)
        self.share = Gauge(
            "shoal_predict_traffic_share",
            "Share of a pipeline's answered inputs each version gave (production and canary; a shadow's is 0)",
            [*labels, "role"],
            registry=registry,
        )
        self.decisions = Counter(
            "shoal_model_decisions",
            "Canary and shadow verdicts of the guardrails: rolled back or promoted, with the role",
            ["pipeline", "version", "role", "action"],
            registry=registry,
        )
        self.load_seconds = Gauge(
            "shoal_predict_model_load_seconds",
            "Seconds the version's replicas took to start (import, setup: model load)",
            labels,
            registry=registry,
        )
