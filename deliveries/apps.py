"""App config for deliveries."""

from django.apps import AppConfig


class DeliveriesConfig(AppConfig):
    name = "deliveries"
    verbose_name = "Partner deliveries"

    def ready(self) -> None:
        from deliveries import routing
        from transfers import signals

        # Routes are read before the pipeline's transaction, deliveries created inside it.
        signals.plan_file_ready.connect(routing.plan_ready, dispatch_uid="deliveries.plan_ready")
        signals.master_key_rotated.connect(_reseal, dispatch_uid="deliveries.reseal")


def _reseal(sender: object, **kwargs: object) -> None:
    """Re-seal endpoint secrets under the new master key."""
    from deliveries import services

    services.reseal_secrets()
