"""App config for the FTPS gateway."""

from django.apps import AppConfig


class FtpsGatewayConfig(AppConfig):
    name = "ftps_gateway"
    verbose_name = "FTPS gateway"

    def ready(self) -> None:
        """Register the gateway's configuration checks."""
        from ftps_gateway import checks  # noqa: F401
