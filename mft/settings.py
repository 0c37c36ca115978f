"""Portside settings, read from the environment with safe embedded defaults.

See README.md for the table of variables. Nothing here needs editing for a deployment.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from celery.schedules import crontab
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from mft import logs as log_formats
from mft.directory import directory_settings
from mft.env import (
    broker_from_url,
    broker_transport,
    database_from_url,
    env_bool,
    env_int,
    env_list,
    env_port,
    env_port_range,
    env_rate,
    env_secret,
    env_str,
    persistent_secret,
)
from mft.mail import email_from_url
from mft.oidc import oidc_from_env

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("MFT_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_secret("SECRET_KEY") or persistent_secret(DATA_DIR, "secret_key")

PUBLIC_URL = env_str("MFT_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
_public = urlsplit(PUBLIC_URL)
if _public.scheme not in ("http", "https") or not _public.hostname:
    raise ImproperlyConfigured(f"MFT_PUBLIC_URL={PUBLIC_URL!r} is not an http(s) URL")
PRODUCTION = _public.scheme == "https"
DEBUG = env_bool("MFT_DEBUG", False)

# Reverse proxies (CIDRs) whose X-Forwarded-For is believed; nobody else's is.
TRUSTED_PROXIES = env_list("MFT_TRUSTED_PROXIES", [])
ALLOWED_HOSTS = env_list("MFT_ALLOWED_HOSTS", [_public.hostname, "127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = [f"{_public.scheme}://{_public.netloc}"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "django_filters",
    "django_celery_beat",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "mft",
    "audit",
    "accounts",
    "sso",
    "transfers",
    "deliveries",
    "notifications",
    "alerts",
    "expected",
    "retention",
    "monitoring",
    "ftps_gateway",
    "dashboard",
]

MIDDLEWARE = [
    "mft.request_id.RequestIdMiddleware",
    "mft.admin_listener.AdminListenerMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mft.urls"
WSGI_APPLICATION = "mft.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'portside.sqlite3'}")
DATABASES = {"default": database_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["accounts.backends.PortsideBackend"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env_int("MFT_PASSWORD_MIN_LENGTH", 12, minimum=8)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "accounts.passwords.HistoryValidator"},
]
PASSWORD_HISTORY = env_int("MFT_PASSWORD_HISTORY", 5, minimum=0)
# Dashboard roles expire after 90 days; partner and API accounts run unattended jobs, so
# expiry is off by default for them (the compliance posture reports it).
PASSWORD_MAX_AGE_DAYS_STAFF = env_int("MFT_PASSWORD_MAX_AGE_DAYS_STAFF", 90, minimum=0)
PASSWORD_MAX_AGE_DAYS_PARTNER = env_int("MFT_PASSWORD_MAX_AGE_DAYS_PARTNER", 0, minimum=0)
PASSWORD_MAX_AGE_DAYS_API = env_int("MFT_PASSWORD_MAX_AGE_DAYS_API", 0, minimum=0)
# The account's own address (else its partner's contact) is told this many days ahead.
PASSWORD_EXPIRY_WARNING_DAYS = env_int("MFT_PASSWORD_EXPIRY_WARNING_DAYS", 14, minimum=1)
# Accounts unused this long are disabled (accounts.inactivity; PCI DSS 8.2.6); 0: never.
ACCOUNT_INACTIVE_DAYS = env_int("MFT_ACCOUNT_INACTIVE_DAYS", 90, minimum=0)
LOGIN_URL = "/login/"
# The name authenticator apps show next to the account (TOTP enrolment).
OTP_TOTP_ISSUER = "Portside"

# --- Directory (LDAP / Active Directory; django-auth-ldap reads the AUTH_LDAP_* names) ----
# Tried first: it answers only for users not kept locally (accounts.directory).
_directory = directory_settings()
globals().update(_directory)
if _directory:
    AUTHENTICATION_BACKENDS.insert(0, "accounts.directory.DirectoryBackend")

# --- Single sign-on (OpenID Connect; mozilla-django-oidc reads the OIDC_* names) ----------
_oidc = oidc_from_env()
OIDC_ENABLED, OIDC_ISSUER = _oidc.enabled, _oidc.issuer
OIDC_RP_CLIENT_ID, OIDC_RP_CLIENT_SECRET = _oidc.client_id, _oidc.client_secret
OIDC_RP_SIGN_ALGO, OIDC_RP_SCOPES = _oidc.sign_algo, _oidc.scopes
OIDC_OP_AUTHORIZATION_ENDPOINT = _oidc.endpoints["authorization"]
OIDC_OP_TOKEN_ENDPOINT = _oidc.endpoints["token"]
OIDC_OP_USER_ENDPOINT = _oidc.endpoints["userinfo"]
OIDC_OP_JWKS_ENDPOINT = _oidc.endpoints["jwks"] or None
OIDC_USERNAME_CLAIM, OIDC_ROLE_CLAIM = _oidc.username_claim, _oidc.role_claim
OIDC_ROLE_MAP, OIDC_MFA_AMR = _oidc.role_map, _oidc.mfa_amr
OIDC_VERIFY_SSL: str | bool = _oidc.ca_file or True
OIDC_TIMEOUT = _oidc.timeout
OIDC_USE_PKCE = True
OIDC_AUTHENTICATE_CLASS = "dashboard.views.sso.SsoStart"
OIDC_CALLBACK_CLASS = "dashboard.views.sso.SsoCallback"
# Always listed: it answers only OIDC callbacks, and only while OIDC_ENABLED.
AUTHENTICATION_BACKENDS.append("sso.backends.OidcBackend")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

X_FRAME_OPTIONS = "DENY"
# Everything the dashboard and the API docs load is served by the app itself (htmx and the
# Swagger UI from drf-spectacular-sidecar), so the policy names no other origin and allows
# no inline script; only the API docs page relaxes style-src (see mft/urls.py).
CONTENT_SECURITY_POLICY = {"DIRECTIVES": {
    "default-src": [SELF], "script-src": [SELF], "style-src": [SELF],
    "img-src": [SELF, "data:"], "font-src": [SELF], "connect-src": [SELF],
    "object-src": [NONE], "base-uri": [NONE], "frame-ancestors": [NONE],
    "form-action": [SELF],
}}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
if PRODUCTION:
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto (see README).
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_SSL_REDIRECT = env_bool("MFT_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_AGE = env_int("MFT_SESSION_TIMEOUT", 3600, minimum=60)
SESSION_SAVE_EVERY_REQUEST = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api_auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "mft.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "mft.api_errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_THROTTLE_CLASSES": [
        "mft.throttling.TokenRateThrottle",
        "mft.throttling.AddressRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "token": env_rate("MFT_API_RATE_TOKEN", "1200/min"),
        "anon": env_rate("MFT_API_RATE_ANON", "60/min"),
    },
    # Throttles key anonymous callers by mft.client_address (MFT_TRUSTED_PROXIES), never
    # by a client-supplied X-Forwarded-For.
    "NUM_PROXIES": 0,
}
SPECTACULAR_SETTINGS = {
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "TITLE": "Portside API",
    "DESCRIPTION": "Managed file transfer: partners, users, files, deliveries, audit.",
    "VERSION": "1",
}

# --- Celery ---------------------------------------------------------------------------------
BROKER_DIR = DATA_DIR / "broker"


CELERY_BROKER_URL, CELERY_BROKER_TRANSPORT_OPTIONS = broker_from_url(
    env_str("CELERY_BROKER_URL", "filesystem://"), BROKER_DIR
)
CELERY_BROKER_TRANSPORT = broker_transport(CELERY_BROKER_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
# Celery's Django fixup closes the database connection around every task unless this is
# set; mft.celery closes old or broken ones instead (CONN_MAX_AGE, CONN_HEALTH_CHECKS), as
# Django does around a request: reopening SQLite per task cost the worker a few ms a file.
CELERY_DB_REUSE_MAX = 1000
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "pipeline-sweeper": {
        "task": "transfers.sweep_pipeline",
        "schedule": float(env_int("MFT_PIPELINE_SWEEP_SECONDS", 30, minimum=1)),
    },
    "delivery-sweeper": {
        "task": "deliveries.sweep",
        "schedule": float(env_int("MFT_DELIVERY_SWEEP_SECONDS", 30, minimum=1)),
    },
}

# --- Files and the pipeline -----------------------------------------------------------------
HOMES_DIR = Path(env_str("MFT_HOMES_DIR", str(DATA_DIR / "homes")))
MASTER_KEY = env_secret("MFT_MASTER_KEY")
MASTER_KEY_PATH = DATA_DIR / "master.key"
ENCRYPT_AT_REST = env_bool("MFT_ENCRYPT_AT_REST", True)
CLAMD_ADDRESS = env_str("MFT_CLAMD", "")
SCAN_MODE = env_str("MFT_SCAN", "on").lower()
SCAN_MAX_BYTES = env_int("MFT_SCAN_MAX_BYTES", 1024 * 1024 * 1024, minimum=1)
SCAN_TIMEOUT = env_int("MFT_SCAN_TIMEOUT", 300, minimum=1)
SCAN_OVERSIZE_POLICY = env_str("MFT_SCAN_OVERSIZE", "hold").lower()
UPLOAD_DENY_PATTERNS = env_list("MFT_UPLOAD_DENY_PATTERNS", [])
MAX_FILE_BYTES = env_int("MFT_MAX_FILE_BYTES", 0, minimum=0)  # 0: no limit
# Start writing a large file out to the disk every this many bytes (0: only at its fsync)
WRITE_BEHIND_BYTES = env_int("MFT_WRITE_BEHIND_BYTES", 8 * 1024 * 1024, minimum=0)
# ... and drop what the disk holds of it from the page cache behind the write-out
WRITE_BEHIND_DROP = env_bool("MFT_WRITE_BEHIND_DROP", True)
PGP_HOME = DATA_DIR / "pgp"
PGP_PASSPHRASE = env_secret("MFT_PGP_PASSPHRASE")
# The platform key's passphrase is a random secret, so gpg-agent's self-calibrated work
# factor (hundreds of millions of rounds on a VM, seconds per decryption) buys nothing.
PGP_S2K_COUNT = env_int("MFT_PGP_S2K_COUNT", 65536, minimum=1024)
PIPELINE_LEASE_SECONDS = env_int("MFT_PIPELINE_LEASE_SECONDS", 600, minimum=10)
PIPELINE_RETRY_MAX = env_int("MFT_PIPELINE_RETRY_MAX_SECONDS", 600, minimum=1)
# Files up to this size run all their steps under one lease and record them in one
# transaction (transfers.pipeline); 0 records every step on its own.
PIPELINE_BATCH_BYTES = env_int("MFT_PIPELINE_BATCH_BYTES", 1024 * 1024, minimum=0)
PIPELINE_PENDING_GRACE = env_int("MFT_PIPELINE_PENDING_GRACE_SECONDS", 60, minimum=1)
PIPELINE_STUCK_SECONDS = env_int("MFT_PIPELINE_STUCK_SECONDS", 3600, minimum=60)
PIPELINE_SWEEP_SECONDS = env_int("MFT_PIPELINE_SWEEP_SECONDS", 30, minimum=1)
WORKER_HEARTBEAT_SECONDS = env_int("MFT_WORKER_HEARTBEAT_SECONDS", 5, minimum=1)

# --- Partner deliveries -----------------------------------------------------------------------
DELIVERY_MAX_ATTEMPTS = env_int("MFT_DELIVERY_MAX_ATTEMPTS", 10, minimum=1)
DELIVERY_MAX_AGE = env_int("MFT_DELIVERY_MAX_AGE_SECONDS", 86400, minimum=1)
DELIVERY_RETRY_BASE = env_int("MFT_DELIVERY_RETRY_BASE_SECONDS", 30, minimum=1)
DELIVERY_RETRY_MAX = env_int("MFT_DELIVERY_RETRY_MAX_SECONDS", 3600, minimum=1)
DELIVERY_LEASE_SECONDS = env_int("MFT_DELIVERY_LEASE_SECONDS", 300, minimum=5)
DELIVERY_PENDING_GRACE = env_int("MFT_DELIVERY_PENDING_GRACE_SECONDS", 60, minimum=1)
# Deliveries to one endpoint sent over one FTPS session, one after the other (1: a new
# session, login and QUIT for every delivery; deliveries.session).
DELIVERY_SESSION_FILES = env_int("MFT_DELIVERY_SESSION_FILES", 100, minimum=1)

# --- Gateway ------------------------------------------------------------------------------------
BIND_ADDRESS = env_str("MFT_BIND_ADDRESS", "127.0.0.1")
WEB_PORT = env_port("MFT_WEB_PORT", 8000)
# The admin UI on a listener of its own (mft.admin_listener); off: served with the rest.
ADMIN_PORT = env_port("MFT_ADMIN_PORT", None)
ADMIN_BIND_ADDRESS = env_str("MFT_ADMIN_BIND_ADDRESS", BIND_ADDRESS)
FTPS_PORT = env_port("MFT_FTPS_PORT", 2121)
FTPS_IMPLICIT_PORT = env_port("MFT_FTPS_IMPLICIT_PORT", 2990)
PASSIVE_PORTS = env_port_range("MFT_PASSIVE_PORTS", "30000-30499")
MASQUERADE_ADDRESS = env_str("MFT_MASQUERADE_ADDRESS", "") or None
# Per client network (`10.0.0.0/8=10.1.2.3;0.0.0.0/0=203.0.113.5`); checked by ftps_gateway.E005.
MASQUERADE_MAP = env_str("MFT_MASQUERADE_MAP", "")
# PROXY protocol from trusted balancers (off, v1, v2, any); checked by ftps_gateway.E004.
PROXY_PROTOCOL = env_str("MFT_PROXY_PROTOCOL", "off").strip().lower()
PROXY_TRUSTED = env_list("MFT_PROXY_TRUSTED", [])
TLS_CERT_FILE = Path(env_str("MFT_TLS_CERT", str(DATA_DIR / "tls" / "server.crt")))
TLS_KEY_FILE = Path(env_str("MFT_TLS_KEY", str(DATA_DIR / "tls" / "server.key")))
TLS_MIN_VERSION = env_str("MFT_TLS_MIN_VERSION", "TLSv1.2")
TLS_CIPHERS = env_str("MFT_TLS_CIPHERS", "") or None
WEB_WORKERS = env_int("MFT_WEB_WORKERS", 2, minimum=1)
WORKER_CONCURRENCY = env_int("MFT_WORKER_CONCURRENCY", 2, minimum=1)
# Work that waits on partners' servers (pushes, pulls, webhooks, mail) has its own queue and
# its own worker (threads: it waits on sockets, not the CPU), so a slow or dead partner
# never holds the slots the file pipeline needs. Each endpoint's own limit still applies.
OUTBOUND_QUEUE = "outbound"
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {name: {"queue": OUTBOUND_QUEUE} for name in (
    "deliveries.run_delivery", "deliveries.run_pull", "notifications.send")}
OUTBOUND_CONCURRENCY = env_int("MFT_OUTBOUND_CONCURRENCY", 8, minimum=1)
GATEWAY_WORKERS = env_int("MFT_GATEWAY_WORKERS", 2, minimum=1)
GATEWAY_BLOCKING_THREADS = env_int("MFT_GATEWAY_BLOCKING_THREADS", 4, minimum=1)
GATEWAY_MAX_CONNECTIONS = env_int("MFT_GATEWAY_MAX_CONNECTIONS", 512, minimum=1)
GATEWAY_MAX_CONNECTIONS_PER_IP = env_int("MFT_GATEWAY_MAX_CONNECTIONS_PER_IP", 50, minimum=1)
GATEWAY_IDLE_TIMEOUT = env_int("MFT_GATEWAY_IDLE_TIMEOUT", 300, minimum=5)
GATEWAY_DATA_TIMEOUT = env_int("MFT_GATEWAY_DATA_TIMEOUT", 120, minimum=5)
GATEWAY_STOP_GRACE = env_int("MFT_GATEWAY_STOP_GRACE_SECONDS", 30, minimum=0)
GATEWAY_AUTH_FAILED_DELAY = env_int("MFT_GATEWAY_AUTH_FAILED_DELAY_MS", 1000, minimum=0) / 1000
GATEWAY_ACTIVE_MODE = env_bool("MFT_ACTIVE_MODE", False)
AUDIT_SPOOL_ROLL_BYTES = env_int("MFT_AUDIT_SPOOL_ROLL_BYTES", 64 * 1024 * 1024, minimum=4096)
BAN_FAILURES = env_int("MFT_BAN_FAILURES", 5, minimum=1)
BAN_WINDOW_SECONDS = env_int("MFT_BAN_WINDOW_SECONDS", 600, minimum=1)
BAN_SECONDS = env_int("MFT_BAN_SECONDS", 1800, minimum=1)
FTPS_OTP_GRACE_SECONDS = env_int("MFT_FTPS_OTP_GRACE_SECONDS", 60, minimum=0)
LOGIN_CACHE_SECONDS = env_int("MFT_LOGIN_CACHE_SECONDS", 60, minimum=0)  # 0: no cache
LOGIN_HASH_CONCURRENCY = env_int("MFT_LOGIN_HASH_CONCURRENCY", 2, minimum=1)

AUDIT_JSONL_PATH = env_str("MFT_AUDIT_JSONL_PATH", "")
AUDIT_SYSLOG_URL = env_str("MFT_AUDIT_SYSLOG", "")
AUDIT_SYSLOG_CA_FILE = env_str("MFT_AUDIT_SYSLOG_CA_FILE", "")
AUDIT_EXPORT_SECONDS = env_int("MFT_AUDIT_EXPORT_SECONDS", 10, minimum=1)
if AUDIT_JSONL_PATH or AUDIT_SYSLOG_URL:
    CELERY_BEAT_SCHEDULE["audit-siem-export"] = {
        "task": "audit.export_siem", "schedule": float(AUDIT_EXPORT_SECONDS)}

# --- Notifications (email and signed webhooks) and metrics ---------------------------------
_email = email_from_url(env_secret("MFT_EMAIL_URL") or "", DATA_DIR / "outbox")
EMAIL_CONFIGURED = _email.configured
EMAIL_BACKEND = _email.backend
EMAIL_HOST, EMAIL_PORT = _email.host, _email.port
EMAIL_HOST_USER, EMAIL_HOST_PASSWORD = _email.user, _email.password
EMAIL_USE_TLS, EMAIL_USE_SSL = _email.use_tls, _email.use_ssl
EMAIL_FILE_PATH = _email.file_path
EMAIL_TIMEOUT = env_int("MFT_EMAIL_TIMEOUT", 30, minimum=1)
DEFAULT_FROM_EMAIL = env_str("MFT_EMAIL_FROM", f"portside@{_public.hostname}")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
NOTIFY_MAX_ATTEMPTS = env_int("MFT_NOTIFY_MAX_ATTEMPTS", 8, minimum=1)
NOTIFY_RETRY_BASE = env_int("MFT_NOTIFY_RETRY_BASE_SECONDS", 30, minimum=1)
NOTIFY_RETRY_MAX = env_int("MFT_NOTIFY_RETRY_MAX_SECONDS", 3600, minimum=1)
NOTIFY_LEASE_SECONDS = env_int("MFT_NOTIFY_LEASE_SECONDS", 120, minimum=10)
NOTIFY_PENDING_GRACE = env_int("MFT_NOTIFY_PENDING_GRACE_SECONDS", 60, minimum=1)
NOTIFY_WEBHOOK_TIMEOUT = env_int("MFT_WEBHOOK_TIMEOUT", 10, minimum=1)
NOTIFY_DIGEST_HOUR = env_int("MFT_NOTIFY_DIGEST_HOUR", 7, minimum=0)
if NOTIFY_DIGEST_HOUR > 23:
    raise ImproperlyConfigured(f"MFT_NOTIFY_DIGEST_HOUR={NOTIFY_DIGEST_HOUR} is not an hour (0-23)")
CELERY_BEAT_SCHEDULE["notifications-sweeper"] = {
    "task": "notifications.sweep",
    "schedule": float(env_int("MFT_NOTIFY_SWEEP_SECONDS", 30, minimum=1))}
CELERY_BEAT_SCHEDULE["notifications-digest"] = {
    "task": "notifications.send_digests", "schedule": crontab(minute=0, hour=NOTIFY_DIGEST_HOUR)}

# --- Alerts (expiry, posture), expected files and retention -----------------------------------
try:
    EXPIRY_ALERT_DAYS = sorted({int(d) for d in env_list("MFT_EXPIRY_ALERT_DAYS",
                                                         ["30", "14", "7", "1"])}, reverse=True)
except ValueError:
    raise ImproperlyConfigured("MFT_EXPIRY_ALERT_DAYS must be whole days, e.g. 30,14,7,1") from None
if not EXPIRY_ALERT_DAYS or min(EXPIRY_ALERT_DAYS) < 1:
    raise ImproperlyConfigured("MFT_EXPIRY_ALERT_DAYS needs at least one day count of 1 or more")
ALERTS_CHECK_SECONDS = env_int("MFT_ALERTS_CHECK_SECONDS", 3600, minimum=60)
EXPECTED_CHECK_SECONDS = env_int("MFT_EXPECTED_CHECK_SECONDS", 60, minimum=5)
RETENTION_HOUR = env_int("MFT_RETENTION_HOUR", 3, minimum=0)
if RETENTION_HOUR > 23:
    raise ImproperlyConfigured(f"MFT_RETENTION_HOUR={RETENTION_HOUR} is not an hour (0-23)")
ARCHIVE_DIR = DATA_DIR / "archive"
CELERY_BEAT_SCHEDULE["alerts-expiry"] = {
    "task": "alerts.check_expiry", "schedule": float(ALERTS_CHECK_SECONDS)}
CELERY_BEAT_SCHEDULE["alerts-posture"] = {
    "task": "alerts.check_posture", "schedule": float(ALERTS_CHECK_SECONDS)}
CELERY_BEAT_SCHEDULE["accounts-hygiene"] = {
    "task": "accounts.hygiene", "schedule": float(ALERTS_CHECK_SECONDS)}
CELERY_BEAT_SCHEDULE["expected-files"] = {
    "task": "expected.check_deadlines", "schedule": float(EXPECTED_CHECK_SECONDS)}
CELERY_BEAT_SCHEDULE["retention"] = {
    "task": "retention.apply", "schedule": crontab(minute=15, hour=RETENTION_HOUR)}

METRICS_DIR = Path(env_str("PROMETHEUS_MULTIPROC_DIR", str(DATA_DIR / "metrics")))
try:
    METRICS_ALLOW = [ipaddress.ip_network(item, strict=False)
                     for item in env_list("MFT_METRICS_ALLOW", [])]
except ValueError as exc:
    raise ImproperlyConfigured(f"MFT_METRICS_ALLOW: {exc}") from None

ADMIN_USER = env_str("MFT_ADMIN_USER", "admin")
ADMIN_PASSWORD = env_secret("MFT_ADMIN_PASSWORD")

# Plain lines stay the default so `make run` is readable; production sets json (mft/logs.py).
LOG_FORMAT = env_str("MFT_LOG_FORMAT", "plain").strip().lower()
if LOG_FORMAT not in log_formats.FORMATS:
    raise ImproperlyConfigured(f"MFT_LOG_FORMAT={LOG_FORMAT!r} is not one of plain, json")
LOGGING = log_formats.config(LOG_FORMAT, env_str("MFT_LOG_LEVEL", "INFO"))
