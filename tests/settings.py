"""Settings for the test suite: the product's settings with a throwaway data dir.

Set in the environment (not overridden later) so that every process the tests start —
workers, gateways, `make run` — inherits the same data dir and database.
"""

import os
import tempfile

os.environ.setdefault("MFT_DATA_DIR", tempfile.mkdtemp(prefix="portside-test-"))
os.environ.setdefault("MFT_GATEWAY_AUTH_FAILED_DELAY_MS", "50")
os.environ.setdefault("MFT_WORKER_HEARTBEAT_SECONDS", "1")

from mft.settings import *  # noqa: F403
from mft.settings import DATA_DIR, DATABASES

# Argon2 still, with small parameters (see tests/hashers.py); the product keeps Django's.
PASSWORD_HASHERS = ["tests.hashers.FastArgon2PasswordHasher"]
if DATABASES["default"]["ENGINE"] == "mft.sqlite":
    # A file, not pytest-django's in-memory default: workers and gateways in other
    # processes must see the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
