"""Shell administration: the secret alone on stdout, clear errors with exit status 1."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from accounts.models import ApiToken, User
from tests.live_worker import current_database_url

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Cli-" + secrets.token_urlsafe(16)


def manage(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run manage.py against the test database in a child process, like an admin would."""
    env = {**os.environ, "DATABASE_URL": current_database_url(),
           "MFT_DATA_DIR": str(settings.DATA_DIR)}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=120)


def test_create_partner_user_prints_only_the_generated_password():
    result = manage("create_partner_user", "acme-ftp", "--partner", "Acme Corp",
                    "--generate-password", "--quota-bytes", "1000000")
    assert result.returncode == 0, result.stderr
    password = result.stdout.strip()
    assert len(password) >= 16 and "\n" not in password and "created user" in result.stderr
    user = User.objects.get(username="acme-ftp")
    assert user.check_password(password) and user.partner.name == "Acme Corp"
    assert user.allowed_protocols == ["ftps"] and user.quota_bytes == 1000000
    assert Path(user.home_dir) == Path(settings.HOMES_DIR) / "acme-ftp"


def test_password_from_stdin_is_set_and_nothing_is_printed():
    result = manage("create_partner_user", "beta", "--partner", "Beta", "--password-stdin",
                    stdin=f"{PASSWORD}\n")
    assert result.returncode == 0 and result.stdout == ""
    assert User.objects.get(username="beta").check_password(PASSWORD)


def test_an_existing_username_is_an_error_unless_update_is_given():
    assert manage("create_partner_user", "gamma", "--partner", "G").returncode == 0
    again = manage("create_partner_user", "gamma", "--partner", "G")
    assert again.returncode == 1 and "already exists" in again.stderr
    updated = manage("create_partner_user", "gamma", "--partner", "G", "--update",
                     "--quota-files", "5")
    assert updated.returncode == 0 and User.objects.get(username="gamma").quota_files == 5


@pytest.mark.parametrize("args", [
    ["create_partner_user", "bad name", "--partner", "X"],
    ["create_partner_user", "ok", "--partner", "X", "--quota-bytes", "-1"],
    ["create_api_token", "nobody", "--scope", "read"],
])
def test_bad_input_exits_1_with_a_clear_message(args):
    result = manage(*args)
    assert result.returncode == 1 and result.stderr.strip() and result.stdout == ""


def test_create_api_token_prints_the_token_once_and_stores_a_digest():
    manage("create_partner_user", "delta", "--partner", "D", "--generate-password")
    result = manage("create_api_token", "delta", "--scope", "read", "--scope", "transfer")
    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip()
    token = ApiToken.objects.get(user__username="delta")
    assert secret.startswith("pst_") and secret not in token.digest
    assert token.scopes == ["read", "transfer"]
