"""Forms of the user, credential and API-token pages: they read what a person typed and
hand it to the accounts services, which decide and audit."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any

from django import forms

from accounts.models import PERMISSION_WORDS, PROTOCOLS, ApiToken, Partner, User
from accounts.users import CREATABLE_ROLES
from dashboard.forms import DateInput
from mft.errors import PortsideError

MIB = 1024 * 1024
KIB = 1024
_MAX_UPLOAD = 256 * 1024  # a certificate or a public key is a few kilobytes


def add_service_error(form: forms.BaseForm, exc: PortsideError) -> None:
    """Show a service's refusal on the form: on a field when the message names one."""
    for part in str(exc).split(" | "):
        name, _, rest = part.partition(": ")
        if rest and name in form.fields:
            form.add_error(name, rest)
        else:
            form.add_error(None, part)


def _lines(text: str) -> list[str]:
    """Return the entries of a text typed one per line (commas and spaces also separate)."""
    return [entry for entry in re.split(r"[\s,]+", text) if entry]


def _moment(day: date | None) -> datetime | None:
    """Return the moment a UTC day starts, or None."""
    return datetime.combine(day, time.min, tzinfo=UTC) if day else None


def _checkboxes(choices: tuple[str, ...], label: str) -> forms.MultipleChoiceField:
    return forms.MultipleChoiceField(choices=[(word, word) for word in choices],
                                     required=False, label=label,
                                     widget=forms.CheckboxSelectMultiple)


class UserFilterForm(forms.Form):
    username = forms.CharField(max_length=150, required=False, label="Login",
                               widget=forms.TextInput(attrs={"type": "search"}))
    partner = forms.ModelChoiceField(queryset=Partner.objects.order_by("name"), required=False,
                                     empty_label="any partner")
    role = forms.ChoiceField(choices=[("", "any role"), *User.Role.choices], required=False)
    enabled = forms.ChoiceField(choices=[("", "enabled or not"), ("true", "enabled"),
                                         ("false", "disabled")], required=False)

    def filter_data(self) -> dict[str, Any]:
        """Return the API filter set's parameters for what was chosen."""
        data = self.cleaned_data
        params = {"username": data.get("username"), "role": data.get("role"),
                  "partner": data["partner"].pk if data.get("partner") else None,
                  "is_active": data.get("enabled")}
        return {name: value for name, value in params.items() if value}


class UserSettingsForm(forms.Form):
    """The settings an admin changes on a user; only what changed is sent to the service."""

    email = forms.EmailField(required=False)
    quota_mb = forms.IntegerField(min_value=0, required=False, label="Quota (MB)",
                                  help_text="empty: no limit")
    quota_files = forms.IntegerField(min_value=0, required=False, label="Quota (files)",
                                     help_text="empty: no limit")
    allowed_protocols = _checkboxes(PROTOCOLS, "Allowed protocols")
    login_method = forms.ChoiceField(choices=User.LoginMethod.choices)
    permissions = _checkboxes(PERMISSION_WORDS, "Permissions")
    allowed_ips = forms.CharField(
        required=False, label="Allowed addresses",
        help_text="addresses or networks (CIDR), one per line; empty: any address",
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}))
    max_sessions = forms.IntegerField(min_value=0, required=False, label="Most sessions at once",
                                      help_text="empty: no limit")
    expires_on = forms.DateField(required=False, label="Account expires", widget=DateInput,
                                 help_text="from 00:00 UTC that day; empty: never")
    ftps_mfa_required = forms.BooleanField(
        required=False, label="Second factor on FTPS",
        help_text="password followed by the authenticator's code, or a client certificate")
    upload_kib = forms.IntegerField(min_value=0, required=False, label="Upload limit (KiB/s)",
                                    help_text="empty or 0: no limit")
    download_kib = forms.IntegerField(min_value=0, required=False,
                                      label="Download limit (KiB/s)",
                                      help_text="empty or 0: no limit")

    @staticmethod
    def initial_for(user: User) -> dict[str, Any]:
        """Return the form's initial values from a user."""
        return {
            "email": user.email,
            "quota_mb": user.quota_bytes // MIB if user.quota_bytes is not None else None,
            "quota_files": user.quota_files,
            "allowed_protocols": list(user.allowed_protocols or []),
            "login_method": user.login_method,
            "permissions": list(user.permissions or []),
            "allowed_ips": "\n".join(user.allowed_ips or []),
            "max_sessions": user.max_sessions,
            "expires_on": user.expires_at.date() if user.expires_at else None,
            "ftps_mfa_required": user.ftps_mfa_required,
            "upload_kib": user.upload_bytes_per_second // KIB or None,
            "download_kib": user.download_bytes_per_second // KIB or None,
        }

    def changes(self) -> dict[str, Any]:
        """Return the service's fields for what the person changed (nothing else is sent,
        so a quota that is not a whole number of MB is not rounded by saving the form)."""
        data, changed = self.cleaned_data, set(self.changed_data)
        values: dict[str, Any] = {
            "email": data.get("email", ""),
            "quota_bytes": data["quota_mb"] * MIB if data.get("quota_mb") is not None else None,
            "quota_files": data.get("quota_files"),
            "allowed_protocols": data.get("allowed_protocols", []),
            "login_method": data.get("login_method"),
            "permissions": data.get("permissions", []),
            "allowed_ips": _lines(data.get("allowed_ips", "")),
            "max_sessions": data.get("max_sessions"),
            "expires_at": _moment(data.get("expires_on")),
            "ftps_mfa_required": bool(data.get("ftps_mfa_required")),
            "upload_bytes_per_second": (data.get("upload_kib") or 0) * KIB,
            "download_bytes_per_second": (data.get("download_kib") or 0) * KIB,
        }
        field_of = {"quota_bytes": "quota_mb", "expires_at": "expires_on",
                    "upload_bytes_per_second": "upload_kib",
                    "download_bytes_per_second": "download_kib"}
        return {name: value for name, value in values.items()
                if field_of.get(name, name) in changed}


class NewUserForm(UserSettingsForm):
    username = forms.CharField(
        max_length=150, label="Login", help_text="letters, digits, . _ - @",
        widget=forms.TextInput(attrs={"autocapitalize": "none", "spellcheck": "false",
                                      "autofocus": True}))
    role = forms.ChoiceField(choices=[(role, User.Role(role).label) for role in CREATABLE_ROLES],
                             initial=User.Role.PARTNER)
    partner = forms.ModelChoiceField(queryset=Partner.objects.order_by("name"), required=False,
                                     empty_label="none", help_text="required for partner users")
    generate_password = forms.BooleanField(
        required=False, initial=True, label="Generate a password (shown once)",
        help_text="off: no password, for certificate-only or token-only accounts")

    field_order = ["username", "role", "partner", "generate_password"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["permissions"].initial = list(PERMISSION_WORDS)
        self.fields["login_method"].initial = User.LoginMethod.PASSWORD
        self.fields["allowed_protocols"].help_text = (
            "none ticked: the role's default (partner ftps, API https, staff web and https)")

    def details(self) -> dict[str, Any]:
        """Return the user service's arguments; unchecked protocols keep the role's default."""
        fields = self.changes()
        if not fields.get("allowed_protocols"):
            fields.pop("allowed_protocols", None)
        data = self.cleaned_data
        return {"username": data["username"], "role": data["role"], "partner": data["partner"],
                "generate_password": data["generate_password"], **fields}


def _read_text(upload: Any) -> str:
    """Return an uploaded text file's content, refusing big or binary files."""
    if upload.size > _MAX_UPLOAD:
        raise forms.ValidationError("the file is too large for a certificate or a key")
    try:
        return str(upload.read().decode("ascii"))
    except UnicodeDecodeError:
        raise forms.ValidationError(
            "the file is not text: upload PEM or ASCII-armored text, not DER or binary"
        ) from None


class _TextOrFileForm(forms.Form):
    """Text pasted or a file chosen: one of the two, read as text."""

    text_field = ""

    def clean(self) -> dict[str, Any]:
        """Read the chosen file into the text field; demand one of the two."""
        data = super().clean() or {}
        upload = data.get("file")
        if upload is not None:
            try:
                data[self.text_field] = _read_text(upload)
            except forms.ValidationError as exc:
                self.add_error("file", exc)
                return data
        if not (data.get(self.text_field) or "").strip():
            self.add_error(self.text_field, "Paste the text or choose a file.")
        return data


class CertificateForm(_TextOrFileForm):
    prefix = "certificate"  # the page holds both upload forms: keep their ids apart
    text_field = "pem"
    partner = forms.ModelChoiceField(queryset=Partner.objects.order_by("name"),
                                     empty_label="choose a partner")
    user = forms.ModelChoiceField(
        queryset=User.objects.filter(role=User.Role.PARTNER).order_by("username"),
        required=False, empty_label="every user of the partner",
        help_text="a CA certificate is always for the whole partner")
    pem = forms.CharField(required=False, label="Certificate (PEM)", widget=forms.Textarea(
        attrs={"rows": 5, "spellcheck": "false", "placeholder": "-----BEGIN CERTIFICATE-----"}))
    file = forms.FileField(required=False, label="…or a PEM file")


class PgpKeyForm(_TextOrFileForm):
    prefix = "pgp"
    text_field = "armored"
    partner = forms.ModelChoiceField(queryset=Partner.objects.order_by("name"),
                                     empty_label="choose a partner")
    armored = forms.CharField(
        required=False, label="Public key (ASCII-armored)", widget=forms.Textarea(
            attrs={"rows": 5, "spellcheck": "false",
                   "placeholder": "-----BEGIN PGP PUBLIC KEY BLOCK-----"}))
    file = forms.FileField(required=False, label="…or an .asc file")


class NewTokenForm(forms.Form):
    user = forms.ModelChoiceField(
        queryset=User.objects.filter(is_active=True).order_by("username"),
        empty_label="choose an account", help_text="the account the token acts as")
    name = forms.CharField(max_length=100, required=False,
                           help_text="what it is for: the system or script using it")
    scopes = forms.MultipleChoiceField(choices=ApiToken.Scope.choices,
                                       widget=forms.CheckboxSelectMultiple, initial=["read"])
    expires_on = forms.DateField(required=False, label="Expires", widget=DateInput,
                                 help_text="from 00:00 UTC that day; empty: never")
    allowed_ips = forms.CharField(
        required=False, label="Allowed addresses",
        help_text="addresses or networks (CIDR), one per line; empty: any address",
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}))

    def details(self) -> dict[str, Any]:
        """Return the token service's keyword arguments (the user goes first, apart)."""
        data = self.cleaned_data
        return {"scopes": list(data["scopes"]), "name": data.get("name", ""),
                "expires_at": _moment(data.get("expires_on")),
                "allowed_ips": _lines(data.get("allowed_ips", ""))}
