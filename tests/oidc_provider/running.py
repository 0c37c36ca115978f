"""Start and stop the test identity provider (serve.py) from the tests."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 90


class RunningProvider:
    """A provider process: its issuer URL, and the people it knows (rewritable)."""

    def __init__(self, state: Path, *, client_id: str, client_secret: str,
                 redirect_uri: str) -> None:
        self.state = state
        # Portside's address, where the provider sends browsers back.
        self.client_base = redirect_uri.split("/oidc/callback/")[0]
        self.people: dict[str, dict[str, Any]] = {}
        self.write_people()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (state / "signing-key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        env = {**os.environ, "OIDC_PROVIDER_STATE": str(state), "OIDC_CLIENT_ID": client_id,
               "OIDC_CLIENT_SECRET": client_secret, "OIDC_REDIRECT_URI": redirect_uri}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.log = (state / "provider.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.oidc_provider.serve"], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=self.log)
        port = self._read_port()
        self.issuer = f"http://127.0.0.1:{port}/o"

    def _read_port(self) -> int:
        """Wait (bounded) for the port line the server prints once it is ready."""
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + START_SECONDS
            while time.monotonic() < deadline:
                if selector.select(timeout=1):
                    line = self.process.stdout.readline().decode().strip()
                    if line.isdigit():
                        return int(line)
                    break
                if self.process.poll() is not None:
                    break
        self.stop()
        raise RuntimeError("the test identity provider did not start: "
                           + (self.state / "provider.log").read_text()[-2000:])

    def add(self, username: str, **entry: Any) -> None:
        """Add or change a person (password, email, given_name, groups, amr, …)."""
        self.people[username] = {**self.people.get(username, {}), **entry}
        self.write_people()

    def write_people(self) -> None:
        """Write the people file the provider reads at each sign-in."""
        path = self.state / "people.json"
        path.with_suffix(".tmp").write_text(json.dumps(self.people))
        path.with_suffix(".tmp").replace(path)

    def stop(self) -> None:
        """Stop the process and wait for it (bounded)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()
