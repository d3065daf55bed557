"""Prometheus metrics of one app (official client library).

Each app has its own registry, so apps built in one process do not collide. With
``--workers N`` the CLI points ``PROMETHEUS_MULTIPROC_DIR`` at a private directory
before the workers start, every worker writes its values there, and ``/metrics``
(whichever worker answers it) aggregates them; per-worker gauges (generation,
refresh age) carry a ``pid`` label then. List names appear as label values; hash
values never do.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "ServiceMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "hashmatch_http_requests", "HTTP requests answered", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "hashmatch_http_request_duration_seconds", "Time to answer a request", ["route"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.stage = Histogram(
            "hashmatch_stage_duration_seconds",
            "Time spent per stage: read_body, hash (decode and hash the upload), match (index "
            "queries and policy), store (curation writes), refresh (taking in store changes)",
            ["stage"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.matches = Counter("hashmatch_matches", "Matches reported, per list", ["list"], registry=r)
        self.index_size = Gauge(
            "hashmatch_index_references", "References that can match, per algorithm", ["algorithm"],
            multiprocess_mode="livemax", registry=r,
        )
        self.generation = Gauge(
            "hashmatch_store_generation", "Store generation this worker serves",
            multiprocess_mode="liveall", registry=r,
        )
        self.refresh_age = Gauge(
            "hashmatch_refresh_age_seconds", "Seconds since this worker last checked the store for changes",
            multiprocess_mode="liveall", registry=r,
        )
        self.ready = Gauge(
            "hashmatch_ready", "1 once the indexes are loaded", multiprocess_mode="livemin", registry=r
        )
        self._last_refresh = time.monotonic()

    def refreshed(self, generation: int, sizes: dict[str, int]) -> None:
        self._last_refresh = time.monotonic()
        self.refresh_age.set(0.0)
        self.generation.set(generation)
        for name, size in sizes.items():
            self.index_size.labels(name).set(size)

    @property
    def refresh_age_seconds(self) -> float:
        return time.monotonic() - self._last_refresh

    def exposition(self) -> bytes:
        self.refresh_age.set(self.refresh_age_seconds)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
