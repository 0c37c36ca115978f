"""App config for deliveries."""

from django.apps import AppConfig


class DeliveriesConfig(AppConfig):
    name = "deliveries"
    verbose_name = "Partner deliveries"

    def ready(self) -> None:
        from deliveries import routing
        from transfers import signals

        # Sent after the pipeline's transaction commits: route the file there and then.
        signals.file_ready.connect(routing.on_file_ready, dispatch_uid="deliveries.file_ready")
        signals.master_key_rotated.connect(_reseal, dispatch_uid="deliveries.reseal")


def _reseal(sender: object, **kwargs: object) -> None:
    """Re-seal endpoint secrets under the new master key."""
    from deliveries import services

    services.reseal_secrets()
