"""Page-number pagination for every API list, with a caller-chosen page size."""

from __future__ import annotations

from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    """Pages of `PAGE_SIZE` rows by default; `page_size` asks for up to 500."""

    page_size_query_param = "page_size"
    max_page_size = 500
