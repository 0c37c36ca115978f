"""API v1 routes."""

from django.urls import path

from transfers import api_views

urlpatterns = [
    path("files/", api_views.FileListCreate.as_view(), name="api-files"),
    path("files/<int:pk>/", api_views.FileDetail.as_view(), name="api-file-detail"),
]
