"""JSON logs: every line parses, and one upload is followed from gateway to worker by one id."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from mft import correlation, logs
from tests.ftps_client import login
from tests.live_worker import ROOT, current_database_url
from tests.waiting import until

pytestmark = pytest.mark.django_db(transaction=True)


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """Parse every non-empty line of a log file as JSON (failing on any other line)."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON log line in {path.name}: {line!r}") from None
    return parsed


class GatewayProcess:
    """`manage.py run_gateway` as a child with JSON logs; stderr kept in a file."""

    def __init__(self, directory: Path) -> None:
        self.stderr_path = directory / "gateway.stderr"
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
               "DATABASE_URL": current_database_url(),
               "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
               "MFT_DATA_DIR": str(settings.DATA_DIR), "MFT_LOG_FORMAT": "json",
               "MFT_FTPS_PORT": "0", "MFT_FTPS_IMPLICIT_PORT": "off",
               "MFT_GATEWAY_WORKERS": "1", "MFT_PASSIVE_PORTS": "42600-42699"}
        self._stderr = open(self.stderr_path, "wb")
        self._stdout = open(directory / "gateway.stdout", "wb")
        self.process = subprocess.Popen([sys.executable, "manage.py", "run_gateway"], cwd=ROOT,
                                        env=env, stdout=self._stdout, stderr=self._stderr)

    def port(self) -> int:
        """Wait for the explicit listener's log line and return its port."""
        def listening() -> int | None:
            assert self.process.poll() is None, self.stderr_path.read_text()
            for entry in _json_lines(self.stderr_path):
                if entry["message"].startswith("FTPS explicit listening on"):
                    return int(entry["message"].rsplit(":", 1)[1])
            return None

        return until(listening, timeout=60, what="gateway listening")

    def stop(self) -> None:
        """Stop the gateway gracefully, killing it if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=45)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._stderr.close()
        self._stdout.close()


@pytest.fixture
def json_gateway(transactional_db: None, tmp_path: Path) -> Iterator[GatewayProcess]:
    from mft import bootstrap

    bootstrap.ensure_certificate()
    gateway = GatewayProcess(tmp_path)
    yield gateway
    gateway.stop()


def _upload_session_id(name: str) -> str:
    """Return the gateway session id the audit log recorded for an upload."""
    from audit.models import AuditEvent

    event = until(lambda: AuditEvent.objects.filter(action="upload", object_repr__contains=name)
                  .first(), timeout=15, what="upload audited")
    return str(event.details["session"])


def test_an_upload_is_followed_from_gateway_session_to_worker_by_one_id(
        partner, json_gateway, start_worker):
    worker = start_worker(MFT_LOG_FORMAT="json")
    port = json_gateway.port()
    ftp = login(port, partner.username, partner.password)
    ftp.storbinary("STOR traced.csv", io.BytesIO(b"id,amount\n1,10\n"))
    ftp.quit()
    session = _upload_session_id("traced.csv")

    def pipeline_lines() -> list[dict[str, Any]]:
        return [e for e in _json_lines(worker.log_path)
                if e.get("correlation_id") == session and "transfers.run_pipeline" in e["message"]]

    worker_lines = until(pipeline_lines, timeout=60, what="pipeline task logged")
    assert all(e["role"] == "worker" and e["task_id"] for e in worker_lines)
    json_gateway.stop()
    gateway_lines = _json_lines(json_gateway.stderr_path)
    session_lines = [e for e in gateway_lines if e["correlation_id"] == session]
    messages = " | ".join(e["message"] for e in session_lines)
    assert "logged in" in messages and "STOR" in messages and "traced.csv" in messages
    assert {e["role"] for e in gateway_lines} == {"gateway"}
    assert all(e["correlation_id"] for e in gateway_lines)


def test_worker_lines_outside_a_task_carry_the_process_id(start_worker):
    worker = start_worker(MFT_LOG_FORMAT="json")
    lines = until(lambda: _json_lines(worker.log_path), timeout=30, what="worker lines")
    assert all(e["correlation_id"] == f"worker:{e['pid']}" for e in lines if "task_id" not in e)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Capture the root logger's lines with the platform's JSON format and filter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


def _request_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [e for e in entries if e["logger"] == "mft.requests"]


@pytest.fixture
def json_web(transactional_db: None, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Run gunicorn (one worker) with JSON logs; yield its port and its stderr file."""
    stderr_path, stdout_path = tmp_path / "web.stderr", tmp_path / "web.stdout"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": current_database_url(), "MFT_DATA_DIR": str(settings.DATA_DIR),
           "MFT_LOG_FORMAT": "json"}
    with open(stderr_path, "wb") as stderr, open(stdout_path, "wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "mft.wsgi:application", "--bind",
             "127.0.0.1:0", "--workers", "1", "--access-logfile", "-"],
            cwd=ROOT, env=env, stdout=stdout, stderr=stderr)

        def listening() -> int | None:
            assert process.poll() is None, stderr_path.read_text()
            for entry in _json_lines(stderr_path):
                if entry["message"].startswith("Listening at:"):
                    return int(entry["message"].split(":")[-1].split()[0].rstrip("/"))
            return None

        try:
            yield until(listening, timeout=60, what="gunicorn listening"), stderr_path
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    assert stdout_path.read_text() == ""


def test_web_request_returns_its_request_id_and_its_log_line_has_it(json_web):
    port, stderr_path = json_web
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=30) as response:
        request_id = response.headers["X-Request-ID"]
    assert request_id and len(request_id) == 32

    def request_line() -> list[dict[str, Any]]:
        return [e for e in _json_lines(stderr_path) if e["logger"] == "mft.requests"]

    [line] = until(request_line, timeout=15, what="request logged")
    assert line["correlation_id"] == request_id and line["role"] == "web"
    assert "GET /login/ 200" in line["message"]


def test_web_request_keeps_a_sane_caller_request_id(json_log):
    response = Client().get("/login/", headers={"X-Request-ID": "lb-7f3a.42"})
    assert response.headers["X-Request-ID"] == "lb-7f3a.42"
    assert _request_lines(json_log)[0]["correlation_id"] == "lb-7f3a.42"


def test_web_request_replaces_an_unsafe_caller_request_id(json_log):
    forged = 'x" forged=1 ' + "a" * 200
    response = Client().get("/login/", headers={"X-Request-ID": forged})
    replaced = response.headers["X-Request-ID"]
    assert replaced != forged and len(replaced) == 32 and correlation.sane(replaced) == replaced
    assert _request_lines(json_log)[0]["correlation_id"] == replaced


def test_task_enqueued_in_a_session_carries_its_id_in_the_headers() -> None:
    from mft.task_context import HEADER, stamp_correlation

    headers: dict[str, Any] = {}
    with correlation.bound("abc123"):
        stamp_correlation(headers=headers)
    assert headers == {HEADER: "abc123"}
