"""App config for expected files: listens for files becoming ready."""

from django.apps import AppConfig


class ExpectedConfig(AppConfig):
    name = "expected"
    verbose_name = "Expected files"

    def ready(self) -> None:
        """Connect the file-ready receiver that closes missing-file alerts."""
        from expected import receivers

        receivers.connect()
