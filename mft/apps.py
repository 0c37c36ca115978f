"""App config for the project package: registers system checks and worker signals."""

from django.apps import AppConfig


class MftConfig(AppConfig):
    name = "mft"
    verbose_name = "Portside platform"

    def ready(self) -> None:
        """Register the configuration checks and the worker heartbeat, and secure the admin."""
        from django.contrib import admin

        from mft import admin_site, checks, heartbeat  # noqa: F401

        admin_site.secure(admin.site)
