"""Run the test identity provider on a free loopback port; print the port, then serve.

Usage: OIDC_PROVIDER_STATE=dir OIDC_CLIENT_ID=… OIDC_CLIENT_SECRET=… OIDC_REDIRECT_URI=…
python -m tests.oidc_provider.serve (the state folder holds signing-key.pem and
people.json; the database is made there).
"""

from __future__ import annotations

import os
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean."""


def _not_ready(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting"]


def main() -> None:
    """Bind first (the issuer names the port), then set Django up and serve."""
    server = make_server("127.0.0.1", 0, _not_ready, server_class=_Server,
                         handler_class=_QuietHandler)
    os.environ["OIDC_PROVIDER_ISSUER"] = f"http://127.0.0.1:{server.server_port}/o"
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.oidc_provider.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from oauth2_provider.models import Application

    call_command("migrate", verbosity=0)
    Application.objects.create(
        name="Portside", client_id=os.environ["OIDC_CLIENT_ID"],
        client_secret=os.environ["OIDC_CLIENT_SECRET"],
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=os.environ["OIDC_REDIRECT_URI"],
        algorithm=Application.RS256_ALGORITHM, skip_authorization=False)
    server.set_app(get_wsgi_application())
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
