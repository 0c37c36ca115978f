"""`make run` smoke test: the whole platform starts on embedded defaults and stops cleanly."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.ftps_client import login

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> set[int]:
    """Return every process below pid (children of children too)."""
    found: set[int] = set()
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                text = Path(f"/proc/{current}/task/{task}/children").read_text()
            except FileNotFoundError:
                continue
            for child in map(int, text.split()):
                if child not in found:
                    found.add(child)
                    pending.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait_http(url: str, deadline: float) -> dict:
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            last = json.loads(exc.read() or b"{}")
            if last.get("components", {}).get("worker", {}).get("status") == "ok":
                return last
        except OSError as exc:
            last = {"error": str(exc)}
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready: {last}")


def _manage(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([str(ROOT / ".venv/bin/python"), "manage.py", *args], cwd=ROOT,
                            env=env, input=stdin, capture_output=True, text=True, timeout=120,
                            check=True)
    return result.stdout.strip()


def _dashboard_login(base: str, username: str, password: str) -> str:
    """Log in over HTTP with the dashboard's form; return where the password step leads."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, "no CSRF token on the login page"
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": token.group(1), "username": username,
                                   "password": password}).encode()
    request = urllib.request.Request(f"{base}/login/", data=form,
                                     headers={"Referer": f"{base}/login/"})
    response = opener.open(request, timeout=10)
    return response.geturl()


@pytest.mark.slow
def test_make_run_serves_web_ftps_and_worker_then_stops_every_child(tmp_path):
    ports = {name: _free_port() for name in ("web", "ftps", "implicit")}
    admin_password = "Adm1n-" + os.urandom(8).hex()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE",
                        "MFT_TEST_STRICT")}
    env.update(MFT_DATA_DIR=str(tmp_path / "var"), MFT_WEB_PORT=str(ports["web"]),
               MFT_FTPS_PORT=str(ports["ftps"]), MFT_FTPS_IMPLICIT_PORT=str(ports["implicit"]),
               MFT_PASSIVE_PORTS="42000-42099", MFT_ADMIN_PASSWORD=admin_password,
               MFT_PUBLIC_URL=f"http://127.0.0.1:{ports['web']}", MFT_GATEWAY_WORKERS="2")
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    children: set[int] = set()
    try:
        base = f"http://127.0.0.1:{ports['web']}"
        health = _wait_http(f"{base}/healthz", time.monotonic() + 120)
        assert health["components"]["worker"]["status"] == "ok", health
        assert health["components"]["database"]["vendor"] == "sqlite"
        children = _descendants(proc.pid)
        assert len(children) >= 5, children  # make's child, web, gateway, worker, beat...
        # The password step of the dashboard login passes; an admin then enrols TOTP.
        assert "/login/enrol" in _dashboard_login(base, "admin", admin_password)
        password = _manage(env, "create_partner_user", "smoke", "--partner", "Smoke Ltd",
                           "--generate-password")
        ftp = login(ports["ftps"], "smoke", password)
        assert ftp.pwd() == "/"
        ftp.quit()
        ftp = login(ports["implicit"], "smoke", password, implicit=True)
        ftp.quit()
        output = (tmp_path / "run.log").read_text()
        assert f"127.0.0.1:{ports['ftps']}" in output and "web + API" in output
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        log.close()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)], (tmp_path / "run.log").read_text()[-3000:]
    assert "all processes stopped" in (tmp_path / "run.log").read_text()
