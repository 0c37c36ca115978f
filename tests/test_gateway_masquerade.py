"""End-to-end: the PASV reply announces an address chosen by the client's network.

Loopback sub-networks stand in for an internal and an internet network: a client bound to
127.0.0.2 is "internal", one on 127.0.0.1 is "from the internet".
"""

from __future__ import annotations

import ftplib
import re

import pytest
from django.test import override_settings

from ftps_gateway import checks
from tests import proxy_client
from tests.ftps_client import ResumingFTP, client_context, reply

pytestmark = pytest.mark.django_db(transaction=True)

INTERNAL = "10.1.2.3"
PUBLIC = "203.0.113.5"
MAP = f"127.0.0.2/32={INTERNAL};0.0.0.0/0={PUBLIC}"


def _login_from(port: int, source: str, member) -> ResumingFTP:
    """Log in from a given loopback source address (data connections use it too)."""
    ftp = ResumingFTP(context=client_context(), timeout=15, source_address=(source, 0))
    ftp.connect("127.0.0.1", port)
    ftp.auth()
    ftplib.FTP.login(ftp, member.username, member.password)
    ftp.prot_p()
    return ftp


def _pasv_address(answer: str) -> str:
    """Return the address of a 227 reply."""
    match = re.search(r"\((\d+),(\d+),(\d+),(\d+),\d+,\d+\)", answer)
    assert match, answer
    return ".".join(match.groups())


@pytest.fixture
def mapped(gateway_factory):
    return gateway_factory(masquerade_map=MAP)


@pytest.mark.parametrize(("source", "announced"), [("127.0.0.2", INTERNAL),
                                                    ("127.0.0.1", PUBLIC)],
                         ids=["internal", "internet"])
def test_pasv_announces_the_address_of_the_clients_network(partner, mapped, source,
                                                            announced):
    ftp = _login_from(mapped.explicit_port, source, partner)
    try:
        assert _pasv_address(reply(ftp, "PASV")) == announced
    finally:
        ftp.close()


def test_epsv_is_unaffected_by_the_map(partner, mapped):
    ftp = _login_from(mapped.explicit_port, "127.0.0.2", partner)
    try:
        assert re.match(r"^229 .*\(\|\|\|\d+\|\)", reply(ftp, "EPSV"))
    finally:
        ftp.close()


def test_transfers_work_for_a_mapped_client(partner, mapped):
    ftp = _login_from(mapped.explicit_port, "127.0.0.2", partner)
    try:
        ftp.set_pasv(True)
        ftp.mkd("inbox")
        assert "inbox" in ftp.nlst()
    finally:
        ftp.quit()


def test_unmapped_client_gets_the_global_masquerade_address(partner, gateway_factory):
    gateway = gateway_factory(masquerade_map=f"127.0.0.2/32={INTERNAL}",
                              masquerade_address="192.0.2.10")
    ftp = _login_from(gateway.explicit_port, "127.0.0.1", partner)
    try:
        assert _pasv_address(reply(ftp, "PASV")) == "192.0.2.10"
    finally:
        ftp.close()


def test_map_uses_the_client_a_proxy_header_names(partner, gateway_factory):
    gateway = gateway_factory(masquerade_map=f"198.51.100.0/24={INTERNAL};0.0.0.0/0={PUBLIC}",
                              proxy_protocol="v1", proxy_trusted=("127.0.0.1/32",))
    ftp = proxy_client.login(gateway.explicit_port, proxy_client.v1_header("198.51.100.7"),
                             partner.username, partner.password)
    try:
        assert _pasv_address(reply(ftp, "PASV")) == INTERNAL
    finally:
        ftp.close()


@pytest.mark.parametrize("junk", ["10.0.0.0/8", "10.0.0.0/8=not-an-ip", "nonsense=1.2.3.4",
                                  "10.0.0.0/8=2001:db8::1"])
def test_junk_map_is_reported_by_the_system_check(junk):
    with override_settings(MASQUERADE_MAP=junk):
        problems = checks.check_proxy_and_masquerade()
    assert [p.id for p in problems] == ["ftps_gateway.E005"]
