"""The admin UI on its own listener: the partner-facing one serves only the API and health."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status(url: str) -> int:
    """Return the HTTP status of a GET without following redirects."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _wait_listening(port: int, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        assert process.poll() is None, "gunicorn exited early"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture(scope="module")
def two_listeners(tmp_path_factory):
    """Run gunicorn as `make run` does with MFT_ADMIN_PORT set: two listeners, one app."""
    tmp_path = tmp_path_factory.mktemp("two-listeners")
    web, admin = _free_port(), _free_port()
    env = {**os.environ, "MFT_DATA_DIR": str(tmp_path), "MFT_WEB_PORT": str(web),
           "MFT_ADMIN_PORT": str(admin), "DJANGO_SETTINGS_MODULE": "mft.settings"}
    env.pop("DATABASE_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT,
                   env=env, check=True, timeout=300)
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "mft.wsgi:application", "--bind",
         f"127.0.0.1:{web}", "--bind", f"127.0.0.1:{admin}", "--workers", "1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        _wait_listening(web, process, deadline)
        _wait_listening(admin, process, deadline)
        yield f"http://127.0.0.1:{web}", f"http://127.0.0.1:{admin}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_partner_facing_listener_hides_the_admin_ui(two_listeners):
    public, _ = two_listeners
    assert _status(f"{public}/login/") == 404
    assert _status(f"{public}/admin/") == 404
    assert _status(f"{public}/metrics") == 404
    assert _status(f"{public}/api/schema/") == 200


def test_admin_listener_serves_the_dashboard_and_the_admin(two_listeners):
    _, admin = two_listeners
    assert _status(f"{admin}/login/") == 200
    assert _status(f"{admin}/admin/") == 302  # to the dashboard's login
    assert _status(f"{admin}/api/schema/") == 200


def test_a_host_header_naming_the_admin_port_does_not_open_the_admin_ui(two_listeners):
    public, admin = two_listeners
    request = urllib.request.Request(f"{public}/login/",
                                     headers={"Host": admin.split("//")[1]})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 404


@pytest.mark.django_db
def test_without_an_admin_port_one_listener_serves_everything(settings):
    settings.ADMIN_PORT = None
    assert Client().get("/login/").status_code == 200


@pytest.mark.django_db
def test_an_admin_listener_on_every_address_matches_by_port(settings):
    settings.ADMIN_PORT, settings.ADMIN_BIND_ADDRESS = 8443, "0.0.0.0"
    client = Client(SERVER_NAME="10.0.0.5", HTTP_HOST="testserver")
    # The test client sets SERVER_PORT per request, so it is given per request.
    assert client.get("/login/", SERVER_PORT="8443").status_code == 200
    assert client.get("/login/", SERVER_PORT="8000").status_code == 404


def test_make_run_binds_the_admin_listener_when_configured(settings):
    from mft.management.commands.run_platform import children

    settings.ADMIN_PORT, settings.ADMIN_BIND_ADDRESS = 8443, "10.0.0.5"
    [web] = [child for child in children() if child.name == "web"]
    assert "10.0.0.5:8443" in web.argv
    settings.ADMIN_PORT = None
    [web] = [child for child in children() if child.name == "web"]
    assert not any(arg.endswith(":8443") for arg in web.argv)
