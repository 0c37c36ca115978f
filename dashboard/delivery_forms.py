"""Forms of the delivery pages: receipt filters, endpoints, routes and pulls.

The configuration forms are built from the models for their labels and choices, but leave
validation to `deliveries.services` (which runs the models' checks and the database's
constraints, and audits), so a rule lives in one place.
"""

from __future__ import annotations

from typing import Any

from django import forms

from accounts.models import Partner, User
from deliveries.models import Delivery, PartnerEndpoint, Pull, Route


class DeliveryFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "any status"), *Delivery.Status.choices],
                               required=False)
    direction = forms.ChoiceField(choices=[("", "push or pull"), *Delivery.Direction.choices],
                                  required=False)
    partner = forms.ModelChoiceField(queryset=Partner.objects.order_by("name"), required=False,
                                     empty_label="any partner")
    endpoint = forms.ModelChoiceField(queryset=PartnerEndpoint.objects.select_related("partner"),
                                      required=False, empty_label="any endpoint")

    def filter_data(self) -> dict[str, Any]:
        """Return the API filter set's parameters for what was chosen."""
        data = self.cleaned_data
        params: dict[str, Any] = {
            "status": [data["status"]] if data.get("status") else None,
            "direction": data.get("direction") or None,
            "partner": data["partner"].pk if data.get("partner") else None,
            "endpoint": data["endpoint"].pk if data.get("endpoint") else None,
        }
        return {name: value for name, value in params.items() if value is not None}


class SecretTextarea(forms.Textarea):
    """A text area that never shows a value back, not even after a refused submission."""

    def format_value(self, value: Any) -> None:
        return None


class ConfigForm(forms.ModelForm):  # type: ignore[type-arg]
    """A model's fields for the services: what changed is sent, the service validates."""

    def _post_clean(self) -> None:
        """Skip the model's own validation here: the service runs it and audits."""

    def changes(self) -> dict[str, Any]:
        """Return the cleaned values of the fields the person changed."""
        return {name: self.cleaned_data[name] for name in self.changed_data
                if name in self.cleaned_data}


class EndpointForm(ConfigForm):
    port = forms.IntegerField(min_value=1, max_value=65535, required=False,
                              help_text="empty: 21 for explicit FTPS, 990 for implicit")
    password = forms.CharField(
        required=False, strip=False, max_length=1024,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="never shown again; on an existing endpoint, empty keeps the stored one")
    client_key_pem = forms.CharField(
        required=False, label="Client private key (PEM)", widget=SecretTextarea(
            attrs={"rows": 3, "spellcheck": "false", "autocomplete": "off"}),
        help_text="with our client certificate; never shown again, empty keeps the stored one")

    class Meta:
        model = PartnerEndpoint
        fields = ["partner", "name", "tls_mode", "host", "port", "tls_server_name", "username",
                  "password", "client_cert_pem", "client_key_pem", "remote_folder", "data_mode",
                  "pinned_sha256", "ca_bundle_pem", "timeout_seconds", "max_connections",
                  "use_temp_name", "enabled"]
        widgets = {"client_cert_pem": forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
                   "ca_bundle_pem": forms.Textarea(attrs={"rows": 3, "spellcheck": "false"})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # An endpoint's sealed secrets are bound to it; it never moves to another partner.
            self.fields["partner"].disabled = True

    def details(self) -> dict[str, Any]:
        """Return the create service's arguments (an empty port picks the mode's default)."""
        data = {name: value for name, value in self.cleaned_data.items()
                if not (name == "port" and value is None)}
        for secret in ("password", "client_key_pem"):
            data[secret] = data.get(secret) or ""
        return data

    def changes(self) -> dict[str, Any]:
        """Return what changed; a secret left empty keeps the stored one."""
        changed = super().changes()
        changed.pop("partner", None)
        for secret in ("password", "client_key_pem"):
            if not changed.get(secret):
                changed.pop(secret, None)
        if changed.get("port", 0) is None:
            changed.pop("port")
        return changed


class RouteForm(ConfigForm):
    class Meta:
        model = Route
        fields = ["name", "endpoint", "source_partner", "source_user", "source_folder",
                  "include_subfolders", "filename_pattern", "remote_folder", "pgp_encrypt",
                  "pgp_sign", "pgp_key", "trigger", "cron", "time_zone", "window_start",
                  "window_end", "enabled"]
        widgets = {"window_start": forms.TimeInput(attrs={"type": "time"}),
                   "window_end": forms.TimeInput(attrs={"type": "time"})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        users = self.fields["source_user"]
        assert isinstance(users, forms.ModelChoiceField)
        users.queryset = User.objects.filter(role=User.Role.PARTNER).order_by("username")


class PullForm(ConfigForm):
    class Meta:
        model = Pull
        fields = ["name", "endpoint", "remote_folder", "filename_pattern", "local_user",
                  "local_folder", "after_download", "move_to_folder", "cron", "time_zone",
                  "max_files_per_run", "stable_seconds", "min_age_seconds", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        users = self.fields["local_user"]
        assert isinstance(users, forms.ModelChoiceField)
        users.queryset = User.objects.exclude(home_dir="").order_by("username")
