"""Build the `/metrics` answer: every process's counters and the database's gauges."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from mft import heartbeat, metrics
from mft.models import ProcessHeartbeat
from monitoring.collectors import DatabaseCollector


def alive_elsewhere() -> list[str]:
    """Return `host:pid` of every process with a recent heartbeat (any host)."""
    names = []
    for kind in ProcessHeartbeat.Kind.values:
        for row in heartbeat.alive(kind):
            host, _, pid = row.name.partition("@")[2].rpartition(":")
            names.append(f"{host.replace('_', '-')}:{pid}")
    return names


def exposition(accept: str) -> tuple[bytes, str]:
    """Return the metrics encoded as the scraper's Accept header asks (text or OpenMetrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.ProcessFilesCollector(alive_elsewhere()))
    registry.register(DatabaseCollector())
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
