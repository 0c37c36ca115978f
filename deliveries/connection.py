"""Open an endpoint's secrets and describe its server to the FTPS client."""

from __future__ import annotations

from deliveries import secrets
from deliveries.ftps_client import FtpsClient, RemoteServer
from deliveries.models import PartnerEndpoint


def secret_context(endpoint: PartnerEndpoint, column: str) -> str:
    """Return what a sealed column of this endpoint is bound to."""
    return f"deliveries.PartnerEndpoint.{column}:{endpoint.secret_context}"


def remote_server(endpoint: PartnerEndpoint) -> RemoteServer:
    """Return the endpoint as the FTPS client's RemoteServer, with its secrets opened."""
    return RemoteServer(
        host=endpoint.host, port=endpoint.port, username=endpoint.username,
        password=secrets.unseal(endpoint.password_secret,
                                context=secret_context(endpoint, "password_secret")),
        implicit=endpoint.implicit,
        passive=endpoint.data_mode == PartnerEndpoint.DataMode.PASSIVE,
        ca_bundle_pem=endpoint.ca_bundle_pem, pinned_sha256=endpoint.pinned_sha256,
        server_name=endpoint.tls_server_name, client_cert_pem=endpoint.client_cert_pem,
        client_key_pem=secrets.unseal(endpoint.client_key_secret,
                                      context=secret_context(endpoint, "client_key_secret")),
        timeout=float(endpoint.timeout_seconds))


def connect(endpoint: PartnerEndpoint) -> FtpsClient:
    """Return a client for the endpoint (use it as a context manager to connect)."""
    return FtpsClient(remote_server(endpoint))
