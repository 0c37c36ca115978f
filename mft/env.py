"""Typed readers for settings taken from the environment.

Every reader raises ImproperlyConfigured on junk instead of guessing, and every secret
may also be given as NAME_FILE (a path), as container secret stores expect.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

# Every variable name the settings asked for: tests check the README and the compose file
# against it, so neither can mention a variable the code does not read.
READ: set[str] = set()

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    """Return the variable's value, or the default when it is unset."""
    READ.add(name)
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    """Return a boolean variable; accept 1/0, true/false, yes/no, on/off."""
    READ.add(name)
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use on/off, true/false, 1/0)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """Return an integer variable, refusing non-numbers and values under the minimum."""
    READ.add(name)
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum {minimum}")
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """Return a comma-separated variable as a list of non-empty, stripped items."""
    READ.add(name)
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


_RATE_PERIODS = {"s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day"}


def env_rate(name: str, default: str) -> str | None:
    """Return a request rate like `100/min` (DRF's form); `off` gives None (no limit)."""
    READ.add(name)
    raw = os.environ.get(name, default).strip().lower()
    if raw == "off":
        return None
    count, _, period = raw.partition("/")
    if not count.isdigit() or int(count) < 1 or period not in _RATE_PERIODS:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a rate like 100/min (per s, min, hour or day) or 'off'")
    return f"{int(count)}/{period}"


def env_port(name: str, default: int | None) -> int | None:
    """Return a TCP port; `off` gives None (listener disabled) and 0 means any free port."""
    READ.add(name)
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    if raw.strip().lower() == "off":
        return None
    try:
        port = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a port number or 'off'") from None
    if not 0 <= port <= 65535:
        raise ImproperlyConfigured(f"{name}={port} is outside 0-65535")
    return port


def env_port_range(name: str, default: str) -> tuple[int, int]:
    """Return an inclusive port range written `low-high`."""
    READ.add(name)
    raw = os.environ.get(name, default).strip()
    try:
        low_text, high_text = raw.split("-", 1)
        low, high = int(low_text), int(high_text)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a range like 30000-30499") from None
    if not (1024 <= low <= high <= 65535):
        raise ImproperlyConfigured(f"{name}={raw!r} must satisfy 1024 <= low <= high <= 65535")
    return low, high


def env_secret(name: str, default: str | None = None) -> str | None:
    """Return a secret from NAME, or from the file named by NAME_FILE."""
    READ.update((name, f"{name}_FILE"))
    value = os.environ.get(name)
    path = os.environ.get(f"{name}_FILE")
    if value and path:
        raise ImproperlyConfigured(f"set {name} or {name}_FILE, not both")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from None
    return value if value else default


def persistent_secret(data_dir: Path, filename: str, nbytes: int = 50) -> str:
    """Return a secret kept in the data dir, generating it once (mode 0600) when absent."""
    path = data_dir / filename
    if path.exists():
        return _read_when_written(path)
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    # O_EXCL: when several processes start at once, exactly one writes the file.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_when_written(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def _read_when_written(path: Path) -> str:
    """Read a secret file, waiting briefly while a concurrent creator finishes writing it."""
    for _ in range(50):
        value = path.read_text().strip()
        if value:
            return value
        time.sleep(0.02)
    raise ImproperlyConfigured(f"{path} is empty; delete it to generate a new secret")


def database_from_url(url: str) -> dict[str, object]:
    """Return Django's DATABASES entry for a URL; SQLite gets WAL and immediate transactions."""
    scheme = urlsplit(url).scheme
    if scheme not in ("sqlite", "postgres", "postgresql", "pgsql"):
        raise ImproperlyConfigured(
            f"DATABASE_URL scheme {scheme!r} is not supported (use sqlite:/// or postgres://)"
        )
    try:
        config: dict[str, object] = dict(dj_database_url.parse(url, conn_max_age=60))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is malformed: {exc}") from None
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # Django's backend, with one write transaction per process at a time (mft.sqlite).
        config["ENGINE"] = "mft.sqlite"
        # Web, gateway, worker and beat all write: WAL lets readers run beside the writer,
        # IMMEDIATE takes the write lock up front (no deadlock on lock upgrade), and the
        # timeout makes writers queue instead of failing with "database is locked".
        # Connections are kept (an idle one outside a transaction holds no WAL snapshot):
        # reopening one per gateway job or request cost a third of small-file throughput
        # (docs/PERFORMANCE.md).
        config["CONN_MAX_AGE"] = 600
        config["CONN_HEALTH_CHECKS"] = True
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    else:
        config["CONN_HEALTH_CHECKS"] = True
    return config


def broker_transport(url: str) -> str | None:
    """Return our kombu transport for a broker URL, or None for kombu's own.

    filesystem: kombu's, with messages that appear in the folder only when whole
    (mft.embedded_broker); redis: kombu's, with one command client per channel
    (mft.redis_broker). kombu prefers a transport named in CELERY_BROKER_TRANSPORT to the
    URL's scheme; rediss:// keeps kombu's own, whose TLS defaults depend on the scheme.
    """
    return {"filesystem": "mft.embedded_broker:Transport",
            "redis": "mft.redis_broker:Transport"}.get(urlsplit(url).scheme)


def broker_from_url(url: str, broker_dir: Path) -> tuple[str, dict[str, object]]:
    """Return the broker URL and transport options; the default needs no server."""
    scheme = urlsplit(url).scheme
    if scheme == "filesystem":
        for sub in ("queue", "processed", "control"):
            (broker_dir / sub).mkdir(parents=True, exist_ok=True)
        return url, {
            "data_folder_in": str(broker_dir / "queue"),
            "data_folder_out": str(broker_dir / "queue"),
            "processed_folder": str(broker_dir / "processed"),
            "control_folder": str(broker_dir / "control"),
            "store_processed": False,
            # The transport polls its folder; kombu's 1 s default put up to a second on
            # every hop of the pipeline (docs/PERFORMANCE.md).
            "polling_interval": 0.1,
        }
    if scheme in ("redis", "rediss"):
        # Longer than the longest pipeline step: Redis redelivers an unacked message only
        # after this. The database, not the broker, is the record of work (see pipeline).
        timeout = env_int("MFT_BROKER_VISIBILITY_TIMEOUT", 7200, minimum=60)
        return url, {"visibility_timeout": timeout}
    raise ImproperlyConfigured(
        f"CELERY_BROKER_URL scheme {scheme!r} is not supported (use redis:// or filesystem://)"
    )
