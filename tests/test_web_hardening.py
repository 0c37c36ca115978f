"""Production settings pass Django's deployment checks; responses carry security headers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent


def test_check_deploy_is_clean_with_an_https_public_url(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(MFT_DATA_DIR=str(tmp_path), MFT_PUBLIC_URL="https://mft.example.com",
               MFT_EMAIL_URL="smtp+tls://alerts@mail.example.com:587",
               DJANGO_SETTINGS_MODULE="mft.settings")
    env.pop("SECRET_KEY", None)
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy",
                             "--fail-level", "WARNING"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.django_db
def test_responses_forbid_framing_and_sniffing():
    response = Client().get("/healthz")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
