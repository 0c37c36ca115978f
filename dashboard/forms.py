"""Dashboard forms: they read and check what a person typed; services decide the rest."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms

from accounts.models import Partner, User
from accounts.onboarding import FirstUser, PartnerDetails
from audit.models import AuditEvent
from deliveries.models import PartnerEndpoint
from transfers.models import FileState


class LoginForm(forms.Form):
    username = forms.CharField(max_length=150, widget=forms.TextInput(
        attrs={"autocomplete": "username", "autofocus": True, "autocapitalize": "none"}))
    password = forms.CharField(max_length=4096, strip=False, widget=forms.PasswordInput(
        attrs={"autocomplete": "current-password"}))


class CodeForm(forms.Form):
    code = forms.CharField(
        max_length=32, label="Code",
        help_text="the 6-digit code from your authenticator app, or a recovery code",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True,
                                      "inputmode": "text", "spellcheck": "false"}))


class EnrolForm(forms.Form):
    code = forms.CharField(
        max_length=8, label="Code from the app",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True,
                                      "inputmode": "numeric", "pattern": "[0-9 ]*"}))


class PasswordChangeForm(forms.Form):
    current = forms.CharField(label="Current password", strip=False, widget=forms.PasswordInput(
        attrs={"autocomplete": "current-password", "autofocus": True}))
    new = forms.CharField(label="New password", strip=False, widget=forms.PasswordInput(
        attrs={"autocomplete": "new-password"}))
    again = forms.CharField(label="New password again", strip=False,
                            widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_current(self) -> str:
        """Refuse a wrong current password (Django's own password-change rule)."""
        current: str = self.cleaned_data["current"]
        if not self.user.check_password(current):
            raise forms.ValidationError("That is not your current password.")
        return current

    def clean(self) -> dict[str, Any]:
        """Refuse two different new passwords."""
        data = super().clean() or {}
        if data.get("new") and data.get("again") and data["new"] != data["again"]:
            self.add_error("again", "The two new passwords differ.")
        return data


def _day_start(day: date | None) -> str | None:
    """Return the ISO moment a UTC day starts, or None."""
    return datetime.combine(day, time.min, tzinfo=UTC).isoformat() if day else None


def _day_end(day: date | None) -> str | None:
    """Return the ISO moment after a UTC day ends (exclusive bound), or None."""
    return _day_start(day + timedelta(days=1)) if day else None


class DateInput(forms.DateInput):
    input_type = "date"


class FileFilterForm(forms.Form):
    partner = forms.ModelChoiceField(queryset=Partner.objects.all(), required=False,
                                     empty_label="any partner")
    user = forms.CharField(max_length=150, required=False, label="User",
                           widget=forms.TextInput(attrs={"placeholder": "username"}))
    state = forms.ChoiceField(choices=[("", "any state"), *FileState.choices], required=False)
    stuck = forms.BooleanField(required=False, label="stuck only")
    date_from = forms.DateField(required=False, label="From", widget=DateInput)
    date_to = forms.DateField(required=False, label="To", widget=DateInput)

    def filter_data(self) -> dict[str, Any]:
        """Return the API filter set's parameters for what was chosen."""
        data = self.cleaned_data
        params: dict[str, Any] = {
            "partner": data["partner"].pk if data.get("partner") else None,
            "owner": data.get("user") or None,
            "state": [data["state"]] if data.get("state") else None,
            "created_after": _day_start(data.get("date_from")),
            "created_before": _day_end(data.get("date_to")),
        }
        return {name: value for name, value in params.items() if value is not None}


class AuditFilterForm(forms.Form):
    partner = forms.ModelChoiceField(queryset=Partner.objects.order_by("name"), required=False,
                                     empty_label="any partner")
    actor = forms.CharField(max_length=150, required=False,
                            widget=forms.TextInput(attrs={"placeholder": "username"}))
    action = forms.CharField(max_length=64, required=False,
                             widget=forms.TextInput(attrs={"placeholder": "login, user.…"}))
    outcome = forms.ChoiceField(choices=[("", "any outcome"), *AuditEvent.Outcome.choices],
                                required=False)
    source_ip = forms.GenericIPAddressField(required=False, label="Address")
    q = forms.CharField(max_length=200, required=False, label="Search",
                        widget=forms.TextInput(attrs={"type": "search",
                                                      "placeholder": "object, file, user"}))
    date_from = forms.DateField(required=False, label="From", widget=DateInput)
    date_to = forms.DateField(required=False, label="To", widget=DateInput)

    def filter_data(self) -> dict[str, Any]:
        """Return the API filter set's parameters (an action ending in . is a prefix)."""
        data = self.cleaned_data
        action = data.get("action") or ""
        params: dict[str, Any] = {
            "actor": data.get("actor") or None,
            "action_prefix" if action.endswith(".") else "action": action or None,
            "outcome": data.get("outcome") or None,
            "source_ip": data.get("source_ip") or None,
            "created_after": _day_start(data.get("date_from")),
            "created_before": _day_end(data.get("date_to")),
        }
        return {name: value for name, value in params.items() if value is not None}


class ReviewForm(forms.Form):
    decision = forms.ChoiceField(choices=[("release", "Release"), ("delete", "Delete"),
                                          ("retry", "Retry now")])
    reason = forms.CharField(max_length=300, required=False, widget=forms.Textarea(
        attrs={"rows": 2, "placeholder": "why: ticket number, false positive, confirmed…"}))

    def clean(self) -> dict[str, Any]:
        """Demand a written reason for a release or a delete."""
        data = super().clean() or {}
        if data.get("decision") in ("release", "delete") and not data.get("reason", "").strip():
            self.add_error("reason", "A reason is required: it goes into the audit log.")
        return data


class NewPartnerForm(forms.Form):
    name = forms.CharField(max_length=120, label="Partner name",
                           widget=forms.TextInput(attrs={"autofocus": True}))
    contact_name = forms.CharField(max_length=120, required=False)
    contact_email = forms.EmailField(required=False)
    contact_phone = forms.CharField(max_length=40, required=False)
    username = forms.CharField(
        max_length=150, label="First user's login",
        help_text="letters, digits, . _ - @; also the name of the home folder",
        widget=forms.TextInput(attrs={"autocapitalize": "none", "spellcheck": "false"}))
    login_method = forms.ChoiceField(choices=User.LoginMethod.choices,
                                     initial=User.LoginMethod.PASSWORD)
    quota_mb = forms.IntegerField(min_value=0, required=False, label="Quota (MB)",
                                  help_text="empty: no limit")
    quota_files = forms.IntegerField(min_value=0, required=False, label="Quota (files)",
                                     help_text="empty: no limit")
    certificate_pem = forms.CharField(
        required=False, label="Client certificate (PEM, optional)",
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false",
                                     "placeholder": "-----BEGIN CERTIFICATE-----"}))
    pgp_key = forms.CharField(
        required=False, label="PGP public key (armored, optional)",
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false",
                                     "placeholder": "-----BEGIN PGP PUBLIC KEY BLOCK-----"}))
    routes = forms.ModelMultipleChoiceField(
        queryset=PartnerEndpoint.objects.filter(enabled=True).select_related("partner")
        .order_by("partner__name", "name"),
        required=False, widget=forms.CheckboxSelectMultiple, label="Send uploads on to",
        help_text="each endpoint ticked gets a route from the first user's uploads")

    def details(self) -> PartnerDetails:
        """Return the partner organisation's fields."""
        data = self.cleaned_data
        return PartnerDetails(name=data["name"], contact_name=data["contact_name"],
                              contact_email=data["contact_email"],
                              contact_phone=data["contact_phone"])

    def first_user(self) -> FirstUser:
        """Return the first user's fields."""
        data = self.cleaned_data
        megabytes = data.get("quota_mb")
        return FirstUser(
            username=data["username"], login_method=data["login_method"],
            quota_bytes=megabytes * 1024 * 1024 if megabytes is not None else None,
            quota_files=data.get("quota_files"), certificate_pem=data["certificate_pem"],
            pgp_key=data["pgp_key"])

    def endpoints(self) -> list[PartnerEndpoint]:
        """Return the endpoints the first user's uploads are routed to."""
        return list(self.cleaned_data.get("routes") or [])
