"""Give every web request a correlation id, echo it in `X-Request-ID`, and log the request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

from mft import correlation

log = logging.getLogger("mft.requests")
HEADER = "X-Request-ID"


class RequestIdMiddleware:
    """Take a sane `X-Request-ID` from the caller or make one; every log line carries it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = correlation.sane(request.headers.get(HEADER)) or correlation.new_id()
        started = time.monotonic()
        with correlation.bound(request_id):
            response = self.get_response(request)
            # The path only: query strings may carry what should not reach a log.
            log.info("%s %s %s %.0fms", request.method, request.path, response.status_code,
                     (time.monotonic() - started) * 1000)
        response[HEADER] = request_id
        return response
