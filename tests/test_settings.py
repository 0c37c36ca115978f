"""Settings read from the environment: URLs parse, junk is refused with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from mft import env


@pytest.fixture(autouse=True)
def _keep_read_names():
    """Forget the made-up variable names these tests read (the README test checks READ)."""
    before = set(env.READ)
    yield
    env.READ.intersection_update(before)


def test_sqlite_url_gets_wal_immediate_transactions_and_busy_timeout(tmp_path):
    config = env.database_from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert config["ENGINE"] == "mft.sqlite"
    options = config["OPTIONS"]
    assert "journal_mode=WAL" in options["init_command"]
    assert options["transaction_mode"] == "IMMEDIATE"
    assert options["timeout"] >= 5


def test_postgres_url_is_parsed_into_its_parts():
    config = env.database_from_url("postgres://portside:s3cret@db.example:6543/mft")
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["HOST"], config["PORT"], config["NAME"], config["USER"]) == (
        "db.example", 6543, "mft", "portside")


@pytest.mark.parametrize("url", ["mysql://x/y", "not a url", "", "postgres://h:notaport/db"])
def test_database_url_junk_is_refused(url):
    with pytest.raises(ImproperlyConfigured):
        env.database_from_url(url)


def test_filesystem_broker_needs_no_server_and_lives_in_the_data_dir(tmp_path):
    url, options = env.broker_from_url("filesystem://", tmp_path / "broker")
    assert url == "filesystem://"
    assert Path(str(options["data_folder_in"])).is_dir()
    assert str(options["data_folder_in"]).startswith(str(tmp_path))


def test_redis_broker_gets_a_visibility_timeout_longer_than_a_step(tmp_path):
    url, options = env.broker_from_url("redis://127.0.0.1:6379/0", tmp_path)
    assert url.startswith("redis://") and int(str(options["visibility_timeout"])) >= 3600


@pytest.mark.parametrize("url", ["amqp//nope", "kafka://x", "redis"])
def test_broker_url_junk_is_refused(url, tmp_path):
    with pytest.raises(ImproperlyConfigured):
        env.broker_from_url(url, tmp_path)


@pytest.mark.parametrize(("raw", "expected"), [("on", True), ("0", False), ("Yes", True)])
def test_booleans_accept_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("MFT_X", raw)
    assert env.env_bool("MFT_X") is expected


@pytest.mark.parametrize(("name", "raw", "reader"), [
    ("MFT_X", "maybe", lambda: env.env_bool("MFT_X")),
    ("MFT_X", "12abc", lambda: env.env_int("MFT_X", 1)),
    ("MFT_X", "70000", lambda: env.env_port("MFT_X", 1)),
    ("MFT_X", "30000", lambda: env.env_port_range("MFT_X", "1-2")),
    ("MFT_X", "40000-30000", lambda: env.env_port_range("MFT_X", "1-2")),
])
def test_junk_values_raise_improperly_configured(monkeypatch, name, raw, reader):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ImproperlyConfigured):
        reader()


def test_port_off_disables_a_listener_and_zero_means_any(monkeypatch):
    monkeypatch.setenv("MFT_P", "off")
    assert env.env_port("MFT_P", 2121) is None
    monkeypatch.setenv("MFT_P", "0")
    assert env.env_port("MFT_P", 2121) == 0


def test_secret_may_come_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.delenv("MFT_S", raising=False)
    monkeypatch.setenv("MFT_S_FILE", str(secret))
    assert env.env_secret("MFT_S") == "from-a-file"


def test_secret_given_twice_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("MFT_S", "a")
    monkeypatch.setenv("MFT_S_FILE", str(tmp_path / "x"))
    with pytest.raises(ImproperlyConfigured):
        env.env_secret("MFT_S")


def test_persistent_secret_is_generated_once_and_kept(tmp_path):
    first = env.persistent_secret(tmp_path, "secret_key")
    assert env.persistent_secret(tmp_path, "secret_key") == first
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"


def test_system_checks_report_bad_scan_configuration(settings):
    from django.core.checks import run_checks

    settings.SCAN_MODE = "sometimes"
    settings.CLAMD_ADDRESS = "clamd:3310"
    ids = {message.id for message in run_checks()}
    assert {"mft.E001", "mft.E003"} <= ids


def test_system_check_reports_a_master_key_of_the_wrong_length(settings):
    from django.core.checks import run_checks

    settings.MASTER_KEY = "c2hvcnQ="
    assert "mft.E004" in {message.id for message in run_checks()}


def test_system_check_refuses_the_admin_listener_on_the_web_port(settings):
    from django.core.checks import run_checks

    settings.WEB_PORT = settings.ADMIN_PORT = 8443
    messages = [m for m in run_checks() if m.id == "mft.E005"]
    assert messages and "MFT_ADMIN_PORT and MFT_WEB_PORT are both 8443" in messages[0].msg


def test_system_check_warns_of_a_listener_inside_the_passive_range(settings):
    from django.core.checks import run_checks

    settings.PASSIVE_PORTS = (2000, 2200)
    settings.FTPS_PORT = 2121
    assert "mft.W005" in {message.id for message in run_checks()}
    settings.PASSIVE_PORTS = (30000, 30099)
    assert "mft.W005" not in {message.id for message in run_checks()}
