"""App config for notifications: connects to the pipeline's signals."""

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        """Connect the file signals' receivers and register the mail check."""
        from notifications import checks, receivers  # noqa: F401

        receivers.connect()
