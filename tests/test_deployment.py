"""The compose file and the README stay true to the code (no Docker engine runs here)."""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

from mft import env

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PORTSIDE_SERVICES = ["migrate", "web", "gateway", "worker", "outbound", "beat"]


def test_compose_defines_the_whole_production_stack():
    assert {"postgres", "redis", "clamav", *PORTSIDE_SERVICES} <= set(COMPOSE["services"])
    for name in ("postgres", "redis", "clamav", "web", "gateway"):
        assert "healthcheck" in COMPOSE["services"][name], name


@pytest.mark.parametrize("service", PORTSIDE_SERVICES)
def test_every_variable_compose_sets_is_one_the_settings_read(service):
    variables = set(COMPOSE["services"][service]["environment"])
    unknown = variables - env.READ
    assert not unknown, f"{service} sets variables nothing reads: {sorted(unknown)}"


def _commands(service: str) -> list[list[str]]:
    command = COMPOSE["services"][service]["command"]
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in command[2].split("&&")]
    return [command]


@pytest.mark.parametrize("service", PORTSIDE_SERVICES)
def test_every_service_command_exists(service):
    for argv in _commands(service):
        program = argv[0]
        if program == "python" and argv[1] == "manage.py":
            assert argv[2] in get_commands(), f"no management command {argv[2]}"
        elif program == "gunicorn":
            module, _, attribute = argv[1].partition(":")
            assert hasattr(importlib.import_module(module), attribute)
        elif program == "celery":
            assert argv[1:3] == ["-A", "mft"] and argv[3] in ("worker", "beat")
            assert importlib.import_module("mft").celery_app.main == "mft"
        else:
            pytest.fail(f"{service}: unexpected program {program}")


def test_gateway_publishes_ftps_and_the_passive_range_it_configures():
    gateway = COMPOSE["services"]["gateway"]
    published = " ".join(gateway["ports"])
    assert COMPOSE["services"]["gateway"]["environment"]["MFT_PASSIVE_PORTS"] in published


def test_readme_documents_every_variable_the_settings_read():
    readme = (ROOT / "README.md").read_text()
    missing = sorted(name for name in env.READ
                     if not name.endswith("_FILE") and f"`{name}`" not in readme)
    assert not missing, f"README.md does not document: {missing}"


@pytest.mark.parametrize("service", PORTSIDE_SERVICES)
def test_every_production_process_logs_json(service):
    from mft import logs

    environment = COMPOSE["services"][service]["environment"]
    assert environment["MFT_LOG_FORMAT"] == "json"
    assert environment["MFT_LOG_FORMAT"] in logs.FORMATS
