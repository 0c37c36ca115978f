"""Which models a configuration export carries, and how each row is named and rebuilt.

Rows are named by natural keys (partner name, username, endpoint partner and name...), so
a document moves between databases whose ids differ; foreign keys are written as the
target's natural key. Values are the model fields as they are in the database, with two
kinds of secret:

- *sealed* columns (endpoint passwords and client keys, webhook secrets) are already
  sealed by the master key (`deliveries.secrets`), bound to their row's `secret_context`;
  they travel sealed, with that context, and an import checks that each one opens;
- *protected* columns are clear in the database (TOTP keys, recovery codes), so they are
  sealed by the master key for the document and opened on import.

Either way the document is useless without the master key, which must be backed up with it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.core.exceptions import ObjectDoesNotExist
from django.db import models

from deliveries import secrets

Row = dict[str, Any]


class SectionError(Exception):
    """A row of the document cannot be rebuilt here."""


@dataclass(frozen=True)
class Section:
    """One model in the document: its rows' natural key, and what is left out or sealed."""

    name: str
    model_label: str
    keys: tuple[str, ...]
    exclude: frozenset[str] = frozenset()
    sealed: dict[str, Callable[[Any], str]] = field(default_factory=dict)
    protected: tuple[str, ...] = ()
    after_save: Callable[[Any], None] | None = None

    @property
    def model(self) -> type[models.Model]:
        return apps.get_model(self.model_label)

    def fields(self) -> list[models.Field[Any, Any]]:
        """Return the columns carried (concrete, not the id, not excluded)."""
        return [f for f in self.model._meta.concrete_fields
                if not f.primary_key and f.name not in self.exclude]


def _endpoint_context(column: str) -> Callable[[Any], str]:
    from deliveries import connection

    return lambda endpoint: connection.secret_context(endpoint, column)


def _subscription_context(subscription: Any) -> str:
    from notifications import subscriptions

    return subscriptions.secret_context(subscription)


def _sync_schedule(obj: Any) -> None:
    from deliveries import schedules

    schedules.sync(obj)


def all_sections() -> list[Section]:
    """Return the sections in import order (a row's targets come before it)."""
    sections = [
        Section("partners", "accounts.Partner", ("name",)),
        Section("users", "accounts.User", ("username",)),
        Section("password_history", "accounts.PasswordHistory", ("user", "password")),
        Section("totp_devices", "otp_totp.TOTPDevice", ("user", "name"), protected=("key",)),
        Section("static_devices", "otp_static.StaticDevice", ("user", "name")),
        Section("static_tokens", "otp_static.StaticToken", ("device", "token"),
                protected=("token",)),
        Section("client_certificates", "accounts.ClientCertificate", ("fingerprint_sha256",)),
        Section("pgp_keys", "accounts.PgpKey", ("fingerprint",)),
        Section("api_tokens", "accounts.ApiToken", ("digest",)),
        Section("endpoints", "deliveries.PartnerEndpoint", ("partner", "name"),
                sealed={"password_secret": _endpoint_context("password_secret"),
                        "client_key_secret": _endpoint_context("client_key_secret")}),
        Section("routes", "deliveries.Route", ("name",), exclude=frozenset({"periodic_task"}),
                after_save=_sync_schedule),
        Section("pulls", "deliveries.Pull", ("name",),
                exclude=frozenset({"periodic_task", "last_listed_at", "last_error"}),
                after_save=_sync_schedule),
        Section("dlp_rules", "transfers.DlpRule", ("partner", "name")),
        Section("subscriptions", "notifications.Subscription", ("secret_context",),
                sealed={"secret_sealed": _subscription_context}),
        Section("posture_acceptances", "mft.PostureAcceptance", ("finding",)),
    ]
    # Apps that may be absent from an install; the session devices of `sso` are not
    # configuration (made again at the next sign-in).
    for app, section in (
            ("sso", Section("sso_identities", "sso.SsoIdentity", ("user",))),
            ("expected", Section("expected_files", "expected.ExpectedFile", ("name",))),
            ("retention", Section("retention_policies", "retention.RetentionPolicy",
                                  ("partner",)))):
        if apps.is_installed(app):
            sections.append(section)
    return sections


def _section_of(model: type[models.Model]) -> Section:
    for section in all_sections():
        if section.model._meta.concrete_model is model._meta.concrete_model:
            return section
    raise SectionError(f"{model._meta.label} is not part of a configuration export")


def _protect_context(section: Section, column: str) -> str:
    return f"portside/config-backup/{section.name}.{column}"


# --- export -----------------------------------------------------------------------------------

def natural_key(obj: models.Model) -> list[Any]:
    """Return a row's natural key (foreign keys as their target's natural key)."""
    section = _section_of(type(obj))
    return [_plain(obj, obj._meta.get_field(name)) for name in section.keys]


def _plain(obj: models.Model, column: Any) -> Any:
    """Return a column's value as JSON: a related row as its natural key."""
    if column.is_relation:
        target = getattr(obj, column.name)
        return None if target is None else natural_key(target)
    value = column.value_from_object(obj)
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return value
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def export_row(section: Section, obj: models.Model) -> Row:
    """Return one row as JSON values, with protected columns sealed."""
    row = {column.name: _plain(obj, column) for column in section.fields()}
    for name in section.protected:
        row[name] = secrets.seal(str(row[name]), context=_protect_context(section, name))
    return row


def export_section(section: Section) -> list[Row]:
    """Return every row of a section, in a stable order."""
    rows = [export_row(section, obj) for obj in section.model._default_manager.all()]
    return sorted(rows, key=lambda row: json.dumps([row[k] for k in section.keys], default=str))


# --- import -----------------------------------------------------------------------------------

def _resolve(model: type[models.Model], key: Any) -> models.Model:
    """Return the row a natural key names, which must exist already."""
    lookup = _lookup(_section_of(model), key)
    try:
        return model._default_manager.get(**lookup)
    except ObjectDoesNotExist:
        raise SectionError(f"{model._meta.verbose_name} {key!r} is named but not in the "
                           "document or the database") from None


def _lookup(section: Section, key: Any) -> dict[str, Any]:
    if not isinstance(key, list) or len(key) != len(section.keys):
        raise SectionError(f"{section.name}: malformed natural key {key!r}")
    return {name: _value(section.model._meta.get_field(name), value)
            for name, value in zip(section.keys, key, strict=True)}


def _value(column: Any, value: Any) -> Any:
    """Return a JSON value as the column's Python value (a natural key as its row)."""
    if value is None:
        return None
    if column.is_relation:
        return _resolve(column.related_model, value)
    if isinstance(column, models.BinaryField):
        return base64.b64decode(value)
    return column.to_python(value)


def import_row(section: Section, row: Row, *, merge: bool) -> bool:
    """Create (or, merging, update) one row; return True when it was created."""
    if not isinstance(row, dict):
        raise SectionError(f"{section.name}: a row is not an object")
    opened = dict(row)
    for name in section.protected:
        try:
            opened[name] = secrets.unseal(row[name], context=_protect_context(section, name))
        except (KeyError, secrets.SecretUnavailable) as exc:
            raise SectionError(f"{section.name}.{name}: {exc}") from None
    columns = {column.name: column for column in section.fields()}
    unknown = set(opened) - set(columns)
    if unknown:
        raise SectionError(f"{section.name}: unknown columns {sorted(unknown)}")
    values = {name: _value(columns[name], opened[name]) for name in opened}
    lookup = {name: values[name] for name in section.keys}
    existing = section.model._default_manager.filter(**lookup).first() if merge else None
    obj = existing or section.model()
    for name, value in values.items():
        setattr(obj, name, value)
    _check_sealed(section, obj)
    obj.save()
    if section.after_save is not None:
        section.after_save(obj)
    return existing is None


def _check_sealed(section: Section, obj: models.Model) -> None:
    """Refuse a sealed column this install's master keys cannot open."""
    for name, context in section.sealed.items():
        try:
            secrets.unseal(getattr(obj, name), context=context(obj))
        except secrets.SecretUnavailable as exc:
            raise SectionError(f"{section.name} {natural_key(obj)!r}: {name}: {exc}; import "
                               "with the master key of the exporting install") from None
