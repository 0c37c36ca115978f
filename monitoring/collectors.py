"""Gauges read from the database (and clamd, the broker, the TLS certificate) at scrape time.

What is true across every process — queue depths, stopped files, expiring credentials,
live processes — is computed when Prometheus asks, from the shared record, rather than
kept in any one process's memory. A source that fails is reported by
`portside_collector_errors{source}` instead of failing the whole scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.sessions.models import Session
from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from accounts.models import ClientCertificate, PgpKey
from deliveries.models import Delivery
from mft.models import ProcessHeartbeat
from monitoring.signatures import signature_age_seconds, signature_date  # noqa: F401 - re-exported
from notifications.models import Notification
from transfers.models import FileState, PipelineStep, StoredFile

log = logging.getLogger(__name__)

DAY = 86400.0
# States worth watching; `ready` and `deleted` only grow and would cost a full count.
WATCHED_STATES = [s for s in FileState.values if s not in (FileState.READY, FileState.DELETED)]
QUEUED_STEPS = [PipelineStep.Status.PENDING, PipelineStep.Status.WAITING,
                PipelineStep.Status.RUNNING]
QUEUED_DELIVERIES = [Delivery.Status.PENDING, Delivery.Status.WAITING, Delivery.Status.RUNNING]
QUEUED_NOTIFICATIONS = [Notification.Status.PENDING, Notification.Status.SENDING,
                        Notification.Status.WAITING, Notification.Status.COLLECTED]
RECENT_STEPS = timedelta(minutes=15)
RECENT_STEPS_LIMIT = 5000


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


def files() -> Iterator[Metric]:
    """Yield how many files are in each state short of ready (held, quarantined, …)."""
    counts = dict(StoredFile.objects.filter(state__in=WATCHED_STATES).values("state")
                  .annotate(n=Count("id")).values_list("state", "n"))
    gauge = _gauge("portside_files", "Stored files by state (ready and deleted left out).",
                   ["state"])
    for state in WATCHED_STATES:
        gauge.add_metric([state], counts.get(state, 0))
    yield gauge


def pipeline() -> Iterator[Metric]:
    """Yield the pipeline's queue depth and recent step durations."""
    depth = _gauge("portside_pipeline_queue", "Pipeline steps not done yet, by step and status.",
                   ["step", "status"])
    for name, status, n in (PipelineStep.objects.filter(status__in=QUEUED_STEPS)
                            .values("name", "status").annotate(n=Count("id"))
                            .values_list("name", "status", "n")):
        depth.add_metric([name, status], n)
    yield depth
    since = timezone.now() - RECENT_STEPS
    seconds: dict[str, list[float]] = {}
    for name, details in (PipelineStep.objects.filter(finished_at__gte=since)
                          .order_by("-finished_at")
                          .values_list("name", "details")[:RECENT_STEPS_LIMIT]):
        value = details.get("seconds") if isinstance(details, dict) else None
        if isinstance(value, int | float):
            seconds.setdefault(name, []).append(float(value))
    average = _gauge("portside_pipeline_step_seconds_avg",
                     "Mean duration of pipeline steps finished in the last 15 minutes.",
                     ["step"])
    longest = _gauge("portside_pipeline_step_seconds_max",
                     "Longest pipeline step finished in the last 15 minutes.", ["step"])
    for name, values in sorted(seconds.items()):
        average.add_metric([name], sum(values) / len(values))
        longest.add_metric([name], max(values))
    yield average
    yield longest


def _by_status(name: str, documentation: str, rows: Iterable[tuple[str, int]],
               statuses: list[str]) -> GaugeMetricFamily:
    counts = dict(rows)
    gauge = _gauge(name, documentation, ["status"])
    for status in statuses:
        gauge.add_metric([status], counts.get(status, 0))
    return gauge


def queues() -> Iterator[Metric]:
    """Yield the partner-delivery and notification queues by status."""
    yield _by_status("portside_delivery_queue", "Partner deliveries not settled, by status.",
                     Delivery.objects.filter(status__in=QUEUED_DELIVERIES).values("status")
                     .annotate(n=Count("id")).values_list("status", "n"),
                     [str(s) for s in QUEUED_DELIVERIES])
    yield _by_status("portside_notification_queue", "Notifications not sent yet, by status.",
                     Notification.objects.filter(status__in=QUEUED_NOTIFICATIONS)
                     .values("status").annotate(n=Count("id")).values_list("status", "n"),
                     [str(s) for s in QUEUED_NOTIFICATIONS])


def _days_left(when: datetime, now: datetime) -> float:
    return (when - now).total_seconds() / DAY


def credentials() -> Iterator[Metric]:
    """Yield the days left before each client certificate and PGP key expires."""
    now = timezone.now()
    certificates = _gauge("portside_client_certificate_expiry_days",
                          "Days until a partner's client certificate (or CA) expires.",
                          ["partner", "subject", "fingerprint"])
    for cert in ClientCertificate.objects.select_related("partner"):
        certificates.add_metric([cert.partner.name, cert.subject[:200],
                                 cert.fingerprint_sha256[:16]], _days_left(cert.not_after, now))
    yield certificates
    keys = _gauge("portside_pgp_key_expiry_days", "Days until a partner's PGP key expires.",
                  ["partner", "fingerprint"])
    for key in PgpKey.objects.filter(expires_at__isnull=False).select_related("partner"):
        assert key.expires_at is not None
        keys.add_metric([key.partner.name, key.fingerprint], _days_left(key.expires_at, now))
    yield keys


def server_certificate() -> Iterator[Metric]:
    """Yield the days left on the gateway's TLS certificate."""
    from cryptography import x509

    path = settings.TLS_CERT_FILE
    if not path.exists():
        return
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    gauge = _gauge("portside_server_certificate_expiry_days",
                   "Days until the FTPS gateway's TLS certificate expires.", ["certificate"])
    gauge.add_metric(["ftps"], _days_left(cert.not_valid_after_utc, timezone.now()))
    yield gauge


def sessions() -> Iterator[Metric]:
    """Yield the live web sessions and the processes that report heartbeats."""
    web = _gauge("portside_web_sessions", "Web (dashboard and admin) sessions not expired.")
    web.add_metric([], Session.objects.filter(expire_date__gt=timezone.now()).count())
    yield web
    cutoff = timezone.now() - timedelta(seconds=3 * settings.WORKER_HEARTBEAT_SECONDS)
    counts = dict(ProcessHeartbeat.objects.filter(last_seen__gte=cutoff).values("kind")
                  .annotate(n=Count("id")).values_list("kind", "n"))
    alive = _gauge("portside_processes_alive", "Processes reporting heartbeats, by kind.",
                   ["kind"])
    for kind in ProcessHeartbeat.Kind.values:
        alive.add_metric([kind], counts.get(kind, 0))
    yield alive


def scanner() -> Iterator[Metric]:
    """Yield whether clamd answers and how old its signature database is."""
    from transfers.scanning import ClamdClient, ScannerError

    up = _gauge("portside_scanner_up", "1 when clamd answers VERSION, 0 when it does not or "
                "none is configured.")
    version = ""
    if settings.SCAN_MODE != "off" and settings.CLAMD_ADDRESS:
        try:
            version = ClamdClient(settings.CLAMD_ADDRESS, timeout=2).version()
        except (ScannerError, OSError) as exc:
            log.info("metrics: clamd did not answer: %s", exc)
    up.add_metric([], 1 if version else 0)
    yield up
    seconds = signature_age_seconds(version, timezone.now()) if version else None
    if seconds is not None:
        age = _gauge("portside_clamav_signature_age_seconds",
                     "Age of clamd's signature database (official databases only).")
        age.add_metric([], seconds)
        yield age


def broker() -> Iterator[Metric]:
    """Yield whether the broker accepts a connection."""
    from mft.celery import app

    gauge = _gauge("portside_broker_up", "1 when the Celery broker accepts a connection.")
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        gauge.add_metric([], 1)
    except Exception as exc:  # noqa: BLE001 - any failure means down
        log.info("metrics: broker unreachable: %s", exc)
        gauge.add_metric([], 0)
    yield gauge


SOURCES: dict[str, Callable[[], Iterator[Metric]]] = {
    "files": files, "pipeline": pipeline, "queues": queues, "credentials": credentials,
    "server_certificate": server_certificate, "sessions": sessions, "scanner": scanner,
    "broker": broker,
}


class DatabaseCollector(Collector):
    """Compute the scrape-time gauges; a failing source is counted, the rest still report."""

    def collect(self) -> Iterator[Metric]:
        """Yield every source's gauges, then the sources that failed."""
        errors = _gauge("portside_collector_errors",
                        "1 for each source whose gauges could not be read this scrape.",
                        ["source"])
        for name, source in SOURCES.items():
            try:
                yield from list(source())
            except Exception:
                log.exception("metrics source %s failed", name)
                errors.add_metric([name], 1)
        yield errors
