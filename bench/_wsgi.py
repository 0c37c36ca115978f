"""A minimal WSGI app for the HTTP limit: gunicorn serving it the way ``make run``
serves Portside (same worker model and flags) is the ceiling of the web tier.

The body is a small JSON document shaped like an empty page of the files list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b'{"count":0,"next":null,"previous":null,"results":[]}'


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]
    )
    return [BODY]
