"""URL routes: admin, health, API (v1) with its schema and docs."""

from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from mft import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file, so no inline script is
    # needed; Swagger UI's React components still set inline styles.
    path("api/docs/", csp_update({"style-src": [UNSAFE_INLINE]})(
        SpectacularSwaggerSplitView.as_view(url_name="api-schema")), name="api-docs"),
    path("api/v1/", include("mft.api_urls")),
    path("oidc/", include("mozilla_django_oidc.urls")),
    path("", include("monitoring.urls")),
    path("", include("dashboard.urls")),
]
