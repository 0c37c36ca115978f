"""What every API view shares: the guarded base viewset, body validation, and content
negotiation for streamed (binary, CSV, JSON lines) responses."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework import viewsets
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.serializers import BaseSerializer

from accounts.permissions import ActionScope


def validated(serializer_class: type[BaseSerializer[Any]], request: Request,
              *, partial: bool = False) -> dict[str, Any]:
    """Return the request body checked by a serializer (400 with field messages if not)."""
    serializer = serializer_class(data=request.data, partial=partial,
                                  context={"request": request})
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class PortsideViewSet(viewsets.GenericViewSet[Any]):
    """A viewset whose actions are guarded by accounts.permissions.ActionScope.

    Subclasses name `action_scopes` and `install_wide_actions` (see ActionScope).
    """

    permission_classes = [ActionScope]
    action_scopes: dict[str, str] = {}
    install_wide_actions: tuple[str, ...] = ()


class FirstRenderer(BaseContentNegotiation):
    """Answer with the view's first renderer whatever the client accepts.

    Streamed responses bypass rendering; only their errors are rendered (as JSON), so a
    client asking for `application/octet-stream` or `text/csv` must not get a 406.
    """

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> Any:
        return next(iter(parsers), None)

    def select_renderer(self, request: Request, renderers: Iterable[BaseRenderer],
                        format_suffix: str | None = None) -> tuple[BaseRenderer, str]:
        first = next(iter(renderers))
        return first, first.media_type
