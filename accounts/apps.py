"""App config for accounts."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and partners"

    def ready(self) -> None:
        """Register the directory configuration checks."""
        from accounts import checks  # noqa: F401
