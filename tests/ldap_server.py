"""A real OpenLDAP server for tests: Debian's slapd on a free loopback port.

Each directory gets a throwaway slapd.conf and database in its own folder, the base
`dc=example,dc=org` with `ou=people`, `ou=groups` and a service account that may read
them, and is stopped (and its folder left for pytest to clean) at teardown.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SLAPD = "/usr/sbin/slapd"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
BASE = "dc=example,dc=org"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
ADMIN_DN = f"cn=admin,{BASE}"
SERVICE_DN = f"cn=portside,ou=services,{BASE}"


def find_slapd() -> str | None:
    """Return slapd's path when it is installed (Debian package `slapd`)."""
    return SLAPD if os.access(SLAPD, os.X_OK) else shutil.which("slapd")


def ssha(password: str) -> str:
    """Return an RFC 2307 {SSHA} hash, as directories store userPassword."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt, usedforsecurity=False).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def free_port() -> int:
    """Return a loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_CONFIG = """\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {schema}/nis.schema
modulepath {modules}
moduleload back_mdb
pidfile {folder}/slapd.pid
{tls}
database mdb
maxsize 104857600
suffix "{base}"
rootdn "{admin}"
rootpw {admin_hash}
directory {folder}/data
access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to *
    by dn.exact="{service}" read
    by self read
    by * none
"""


@dataclass
class Slapd:
    """A running slapd and what a test needs to talk to it."""

    folder: Path
    port: int
    admin_password: str
    service_password: str
    process: subprocess.Popen[bytes] | None = None
    tls: tuple[str, str] | None = None
    ldaps_port: int = 0

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self) -> str:
        """Return the LDAPS listener's URI (slapd listens there only when given TLS files)."""
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def start(self, timeout: float = 15) -> None:
        """Start slapd in the foreground and wait until it answers a bind."""
        log = (self.folder / "slapd.log").open("ab")
        self.process = subprocess.Popen(
            [find_slapd() or SLAPD, "-f", str(self.folder / "slapd.conf"),
             "-h", f"{self.uri}/" + (f" {self.ldaps_uri}/" if self.tls else ""), "-d", "0"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited: {self.log_tail()}")
            try:
                self.connection().unbind_s()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop slapd, waiting for it to exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self) -> str:
        """Return the end of slapd's log, for failure messages."""
        return (self.folder / "slapd.log").read_text(errors="replace")[-2000:]

    def connection(self):  # type: ignore[no-untyped-def]
        """Return a python-ldap connection bound as the directory's administrator."""
        import ldap

        conn = ldap.initialize(self.uri, bytes_mode=False)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 5)
        conn.simple_bind_s(ADMIN_DN, self.admin_password)
        return conn

    def add(self, dn: str, **attributes: str | list[str]) -> None:
        """Add an entry; attribute values are strings or lists of strings."""
        import ldap.modlist

        entry = {name: [v.encode() for v in (value if isinstance(value, list) else [value])]
                 for name, value in attributes.items()}
        conn = self.connection()
        try:
            conn.add_s(dn, ldap.modlist.addModlist(entry))
        finally:
            conn.unbind_s()

    def modify(self, dn: str, operation: str, attribute: str, value: str) -> None:
        """Add, replace or delete one attribute value (`add`, `replace`, `delete`)."""
        import ldap

        codes = {"add": ldap.MOD_ADD, "replace": ldap.MOD_REPLACE, "delete": ldap.MOD_DELETE}
        conn = self.connection()
        try:
            conn.modify_s(dn, [(codes[operation], attribute, [value.encode()])])
        finally:
            conn.unbind_s()

    def add_person(self, uid: str, password: str, **extra: str | list[str]) -> str:
        """Add a person under ou=people and return their DN."""
        dn = f"uid={uid},{PEOPLE}"
        self.add(dn, objectClass=["inetOrgPerson"], uid=uid, cn=uid, sn=uid.title(),
                 userPassword=ssha(password), **extra)
        return dn

    def add_group(self, cn: str, *members: str) -> str:
        """Add a groupOfNames under ou=groups; the base is always a member too, since the
        schema refuses a group left without members."""
        dn = f"cn={cn},{GROUPS}"
        self.add(dn, objectClass="groupOfNames", cn=cn, member=[BASE, *members])
        return dn


def start_slapd(folder: Path, *, tls: tuple[str, str] | None = None) -> Slapd:
    """Write a throwaway config and base entries, start slapd, and return it."""
    server = Slapd(folder, free_port(), secrets.token_urlsafe(16), secrets.token_urlsafe(16),
                   tls=tls, ldaps_port=free_port() if tls else 0)
    (folder / "data").mkdir(parents=True)
    tls_lines = (f"TLSCertificateFile {tls[0]}\nTLSCertificateKeyFile {tls[1]}" if tls else "")
    (folder / "slapd.conf").write_text(_CONFIG.format(
        schema=SCHEMA_DIR, modules=MODULE_DIR, folder=folder, base=BASE, admin=ADMIN_DN,
        admin_hash=ssha(server.admin_password), service=SERVICE_DN, tls=tls_lines))
    server.start()
    server.add(BASE, objectClass=["dcObject", "organization"], dc="example", o="Example")
    for unit in ("people", "groups", "services"):
        server.add(f"ou={unit},{BASE}", objectClass="organizationalUnit", ou=unit)
    server.add(SERVICE_DN, objectClass=["organizationalRole", "simpleSecurityObject"],
               cn="portside", userPassword=ssha(server.service_password))
    return server
