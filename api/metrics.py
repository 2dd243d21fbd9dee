"""Prometheus metrics of one app: its own registry, request counters and latency histograms,
and the served index's state read at scrape time.

Labels are route templates (``/items/{item_id}``), methods and status codes only: never ids,
texts or anything else a client sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from engine.writes import pending_changes

# Seconds: a cached query answers in ~1 ms, an embedded one in tens, a reload in seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _StateCollector(Collector):
    """The served bundle, reloads, compactions and the query-embedding cache, at scrape time."""

    def __init__(self, state: Any) -> None:
        self._state = state

    def collect(self) -> Iterator[Any]:
        recommender = getattr(self._state, "recommender", None)
        if recommender is not None:
            bundle = recommender.bundle
            info = InfoMetricFamily("vecrec_index", "the served index version")
            info.add_metric(
                [],
                {
                    "name": bundle.manifest.name,
                    "version": bundle.manifest.version,
                    "model": bundle.manifest.model.spec,
                },
            )
            yield info
            yield GaugeMetricFamily("vecrec_index_items", "items served", value=bundle.live_count)
            yield GaugeMetricFamily(
                "vecrec_index_pending_updates",
                "live changes not yet folded by a compaction",
                value=pending_changes(bundle),
            )
            cache = recommender.query_cache
            if cache is not None:
                yield CounterMetricFamily(
                    "vecrec_query_cache_hits",
                    "query texts answered from the cache",
                    value=cache.hits,
                )
                yield CounterMetricFamily(
                    "vecrec_query_cache_misses", "query texts embedded", value=cache.misses
                )
        reloader = getattr(self._state, "reloader", None)
        if reloader is not None:
            yield CounterMetricFamily("vecrec_reloads", "hot reloads", value=reloader.reloads)
            yield CounterMetricFamily(
                "vecrec_reload_failures", "reloads refused", value=reloader.failures
            )
        writer = getattr(self._state, "writer", None)
        if writer is not None:
            yield CounterMetricFamily(
                "vecrec_compactions",
                "compactions that replaced the version",
                value=writer.compactions,
            )


class Metrics:
    """Everything ``GET /metrics`` shows for one app."""

    def __init__(self, state: Any) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vecrec_requests",
            "HTTP requests answered",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vecrec_request_duration_seconds",
            "time from request to response",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.embedding = Histogram(
            "vecrec_query_embedding_duration_seconds",
            "embedding one query text (cache misses only)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(state))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
