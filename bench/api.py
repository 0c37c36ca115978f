"""REST figures: listing files and creating users, with 20 concurrent clients.

The web tier runs as ``make run`` starts it (gunicorn, 2 workers x 4 threads,
access log on).  A dedicated partner user ``bench-api`` (``create_partner_user``,
``"https"`` added to its allowed protocols with ``manage.py shell -c``, a token
from ``create_api_token --scope read --scope transfer``) owns a known set of
files uploaded through the API itself (``POST /api/v1/files/?path=...``), so the
page listed is the same whatever ran before: 60 files, a full page of 50.

Each of the 20 clients holds its own token (the first from ``create_api_token``,
the others from the same service, ``accounts.tokens.create_api_token``, in one
``manage.py shell -c``), like 20 integrations: the API's per-token throttle
(``MFT_API_RATE_TOKEN``, where the product has one) stays on and applies to each.

Creating users (``POST /api/v1/users/``): an admin ``bench-admin`` (``create_admin``)
holds one admin-scope token per client; each request creates a new partner user of the
partner "Bench Users" with a generated password, as the dashboard's new-user form does,
so each request pays one Argon2 hash: its rate is shown against ``argon2.verify.parallel``.

Limits ``http.hello.*``: the same gunicorn command line serving a minimal WSGI
app (:mod:`bench._wsgi`) under the same load client -- the ceiling of the web
tier on this machine, before Django, DRF, authentication and the database.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import bench.pipeline  # noqa: F401 - figures run in import order: ftps, pipeline, api, audit
from bench.core import LIMIT, REPO_DIR, Context, Result, measurement
from bench.ftps import ARGON_PAR, wait_files
from bench.portside import MachineWindow, Portside, Service, free_port, main_platform, wait_http

HELLO_RPS, HELLO_P50, HELLO_P95 = "http.hello.rps", "http.hello.p50", "http.hello.p95"
API_USER = "bench-api"
CLIENTS = 20
SEED_FILES = 60


def load(
    ctx: Context,
    port: int,
    path: str,
    token_file: str = "",
    post_json: str = "",
    expect: str = "200",
    seconds: float | None = None,
) -> dict[str, Any]:
    seconds = seconds or ctx.pick(10.0, 2.0)
    args = [
        "--port",
        str(port),
        "--path",
        path,
        "--clients",
        str(CLIENTS),
        "--seconds",
        str(seconds),
    ]
    if token_file:
        args += ["--token-file", token_file]
    if post_json:
        args += ["--post-json", post_json]
    with MachineWindow() as win, ctx.python_peer("bench._http", *args, name="http-load") as peer:
        out = peer.finish(grace=ctx.remaining())
    if out["errors"] or set(out["statuses"]) != {expect}:
        raise RuntimeError(
            f"load on {path}: statuses {out['statuses']}, errors {out['first_errors']}"
        )
    return {**out, **win.report()}


@measurement(
    "http.hello", kind=LIMIT, produces=(HELLO_RPS, HELLO_P50, HELLO_P95), unit="req/s", timeout=180
)
def hello(ctx: Context) -> list[Result]:
    port = free_port()
    log = ctx.workdir / "hello-web.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_DIR)
    svc = Service(
        "hello-web",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "bench._wsgi:app",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--graceful-timeout",
            "10",
            "--access-logfile",
            "-",
            "--chdir",
            str(REPO_DIR),
        ],
        env,
        log,
    )
    try:
        wait_http(port, time.monotonic() + 60, svc)
        out = load(ctx, port, "/")
    finally:
        svc.stop()
    note = f"gunicorn 2x4 threads, minimal WSGI app, {CLIENTS} clients"
    return [
        Result(HELLO_RPS, out["rps"], "req/s", note=note, extra=out),
        Result(HELLO_P50, out["p50_ms"], "ms", note=note),
        Result(HELLO_P95, out["p95_ms"], "ms", note=note),
    ]


def _api_user(ctx: Context, ps: Portside) -> Path:
    """Create the API user and one token per client, once per platform; return the file."""
    token_file = ps.data_dir / "bench-api.tokens"
    if token_file.exists():
        return token_file
    ps.manage(
        "create_partner_user", API_USER, "--partner", "Bench API Partner", "--generate-password"
    )
    more = ps.manage(
        "shell",
        "-c",
        "from accounts import tokens; from accounts.models import User; "
        f"User.objects.filter(username='{API_USER}').update("
        "allowed_protocols=['ftps', 'https']); "
        f"u = User.objects.get(username='{API_USER}'); "
        f"print('\\n'.join(tokens.create_api_token(u, scopes=['read'], "
        f"name=f'bench-{{i}}').secret for i in range({CLIENTS - 1})))",
    )
    made = ps.manage("create_api_token", API_USER, "--scope", "read", "--scope", "transfer")
    secrets = [made.stdout.strip().splitlines()[-1]]
    secrets += [t for t in more.stdout.split() if t.startswith("pst_")]
    token_file.write_text("\n".join(secrets) + "\n")
    token_file.chmod(0o600)
    return token_file


def _seed(ps: Portside, token: str, count: int) -> list[str]:
    """Upload ``count`` small files through the API itself."""
    assert ps.web_port is not None
    conn = http.client.HTTPConnection("127.0.0.1", ps.web_port, timeout=60)
    paths = []
    for i in range(count):
        path = f"/api-seed/f{i:03d}.csv"
        body = (f"invoice,{i}\n" * 200).encode()
        for _ in range(100):
            conn.request(
                "POST",
                f"/api/v1/files/?path={path}",
                body=body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/octet-stream",
                },
            )
            resp = conn.getresponse()
            text = resp.read()
            if resp.status != 429:  # throttled: wait as told, like a well-behaved client
                break
            time.sleep(min(5.0, float(resp.getheader("Retry-After") or 1)))
        if resp.status != 201:
            raise RuntimeError(f"seeding {path}: HTTP {resp.status} {text[:300]!r}")
        paths.append(path)
    conn.close()
    return paths


@measurement(
    "api.files.list",
    produces=("api.files.list.rps", "api.files.list.p50", "api.files.list.p95"),
    unit="req/s",
    timeout=600,
)
def files_list(ctx: Context) -> list[Result]:
    ps = main_platform(ctx)
    assert ps.web_port is not None
    token_file = _api_user(ctx, ps)
    tokens = token_file.read_text().split()
    seeded = _seed(ps, tokens[0], ctx.pick(SEED_FILES, 10))
    # let the seeded files' pipeline finish: the workers must not compete with the load
    # (quick mode does not wait: ~0.5 s per file on the embedded broker)
    done = wait_files(ctx, ps, seeded, owner=API_USER, poll=0.25, timeout=ctx.pick(None, 1.0))
    out = load(ctx, ps.web_port, "/api/v1/files/", str(token_file))
    conn = http.client.HTTPConnection("127.0.0.1", ps.web_port, timeout=60)
    conn.request("GET", "/api/v1/files/", headers={"Authorization": f"Bearer {tokens[0]}"})
    page = json.loads(conn.getresponse().read())
    conn.close()
    extra = {
        **out,
        "files_visible": page.get("count"),
        "page_rows": len(page.get("results", [])),
        "seed_states": sorted({f["state"] for f in done["files"]}),
    }
    note = f"{CLIENTS} clients, a token each, page of {extra['page_rows']} of {page.get('count')}"
    return [
        Result("api.files.list.rps", out["rps"], "req/s", limit=HELLO_RPS, note=note, extra=extra),
        Result("api.files.list.p50", out["p50_ms"], "ms", limit=HELLO_P50, note=note),
        Result("api.files.list.p95", out["p95_ms"], "ms", limit=HELLO_P95, note=note),
    ]


def _admin_tokens(ps: Portside) -> tuple[Path, int]:
    """Create the admin, its tokens and the partner new users join; return (file, partner)."""
    token_file = ps.data_dir / "bench-admin.tokens"
    out = ps.manage(
        "shell",
        "-c",
        "import secrets; from accounts import services, tokens; "
        "from accounts.models import Partner, User; "
        "u = User.objects.filter(username='bench-admin').first() or "
        "services.create_admin('bench-admin', secrets.token_urlsafe(24)); "
        "p, _ = Partner.objects.get_or_create(name='Bench Users'); "
        "print('partner', p.pk); "
        f"print('\\n'.join(tokens.create_api_token(u, scopes=['admin'], "
        f"name=f'bench-admin-{{i}}').secret for i in range({CLIENTS})))",
    )
    lines = out.stdout.splitlines()
    partner = int(next(ln.split()[1] for ln in lines if ln.startswith("partner ")))
    secrets = [t for t in out.stdout.split() if t.startswith("pst_")]
    token_file.write_text("\n".join(secrets) + "\n")
    token_file.chmod(0o600)
    return token_file, partner


@measurement(
    "api.users.create",
    produces=("api.users.create.rps", "api.users.create.p50", "api.users.create.p95"),
    unit="req/s",
    timeout=600,
)
def users_create(ctx: Context) -> list[Result]:
    ps = main_platform(ctx)
    assert ps.web_port is not None
    token_file, partner = _admin_tokens(ps)
    body = json.dumps(
        {
            "username": "bench-u-{run}-{client}-{n}",
            "role": "partner",
            "partner": partner,
            "generate_password": True,
            "allowed_protocols": ["ftps"],
        }
    )
    # Each creation hashes a password (~150 ms of CPU here): a longer window than the GETs'.
    out = load(ctx, ps.web_port, "/api/v1/users/", str(token_file), post_json=body,
               expect="201", seconds=ctx.pick(20.0, 6.0))
    note = f"{CLIENTS} clients, an admin token each; each user gets a generated password (Argon2)"
    return [
        Result("api.users.create.rps", out["rps"], "/s", limit=ARGON_PAR, note=note, extra=out),
        Result("api.users.create.p50", out["p50_ms"], "ms", limit=HELLO_P50, note=note),
        Result("api.users.create.p95", out["p95_ms"], "ms", limit=HELLO_P95, note=note),
    ]
