"""App config for the project package: registers system checks and worker signals."""

from django.apps import AppConfig


class MftConfig(AppConfig):
    name = "mft"
    verbose_name = "Portside platform"

    def ready(self) -> None:
        """Register the configuration checks, the worker heartbeat and SQLite's busy handler."""
        from django.contrib import admin
        from django.db.backends.signals import connection_created

        from mft import admin_site, checks, heartbeat, sqlite_busy  # noqa: F401

        admin_site.secure(admin.site)
        connection_created.connect(sqlite_busy.on_connection_created,
                                   dispatch_uid="mft.sqlite_busy")
