"""The test provider's people, from people.json: passwords, names, groups and `amr`."""

from __future__ import annotations

import hmac
import json
import os
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest
from oauth2_provider.oauth2_validators import OAuth2Validator


def person(username: str) -> dict[str, Any] | None:
    """Return a person's entry as the test last wrote it, or None."""
    state = Path(os.environ["OIDC_PROVIDER_STATE"])
    people: dict[str, dict[str, Any]] = json.loads((state / "people.json").read_text())
    return people.get(username)


class PeopleBackend(ModelBackend):
    """Check the password the test wrote for the person; keep a Django user for sessions."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None,
                     password: str | None = None, **kwargs: Any) -> Any:
        entry = person(username or "")
        if entry is None or password is None or not hmac.compare_digest(
                entry["password"].encode(), password.encode()):
            return None
        user, _ = get_user_model().objects.get_or_create(username=username)
        return user


class PeopleValidator(OAuth2Validator):
    """Put the person's current names, groups and `amr` in the ID token and userinfo."""

    # Release every claim below whatever the scopes: this provider exists for the tests.
    oidc_claim_scope = None

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        entry = person(request.user.username) or {}
        released = ("email", "given_name", "family_name", "groups", "amr")
        claims: dict[str, Any] = {key: entry[key] for key in released if key in entry}
        return {"preferred_username": request.user.username, **claims}
