"""Django settings, read from environment variables through small typed helpers.

Bad configuration fails loudly at start-up rather than at the first request.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from piaotong.lib import fieldcrypto

BASE_DIR = Path(__file__).resolve().parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r}: use 1/0, true/false, yes/no or on/off")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def env_prepare_threshold(name: str, default: int) -> int | None:
    """psycopg's `prepare_threshold`: how many times a statement runs on a connection before it
    is prepared, or None (the value `off`) for never."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw.strip().lower() == "off":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    # Not 0, psycopg's "prepare at once": the first execution would then be prepared even for
    # SQL holding several statements (Django's schema editor sends some), which PostgreSQL
    # refuses; from 1 on, psycopg learns from the first execution that it cannot be prepared.
    if value < 1:
        raise ImproperlyConfigured(
            f"{name}={raw!r}: use a count of executions of at least 1 (e.g. 5) after which "
            "a statement is prepared, or off (never prepare, for a pooler in transaction mode)"
        )
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    return default if raw is None else [part.strip() for part in raw.split(",") if part.strip()]


VAR_DIR = Path(env_str("PIAOTONG_VAR_DIR", str(Path.cwd() / "var"))).resolve()
DEBUG = env_bool("PIAOTONG_DEBUG", False)


def installation_secret(name: str, make: Callable[[], str]) -> str:
    """The content of `VAR_DIR/name`, written by `make()` (mode 0600) if the file is new."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / name
    try:
        # O_EXCL: when several processes start at once, exactly one writes the secret.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(make())
    return path.read_text().strip()


SECRET_KEY = os.environ.get("PIAOTONG_SECRET_KEY", "")
if not SECRET_KEY:
    # A stable per-installation secret, so sessions survive restarts without configuration.
    SECRET_KEY = installation_secret("secret_key", lambda: secrets.token_urlsafe(50))

ALLOWED_HOSTS = env_list(
    "PIAOTONG_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env_list("PIAOTONG_CSRF_TRUSTED_ORIGINS", [])

# Node identity: the region this node serves (digits 3-4 of the numbers it assigns) and the
# issuing-channel digit (digit 5). The channel has no public enumeration, so it is configurable.
PIAOTONG_REGION = env_str("PIAOTONG_REGION", "11")
PIAOTONG_CHANNEL = env_str("PIAOTONG_CHANNEL", "2")
PIAOTONG_NODE_ID = env_str("PIAOTONG_NODE_ID", f"node-{PIAOTONG_REGION}")
PIAOTONG_KEY_DIR = Path(env_str("PIAOTONG_KEY_DIR", str(VAR_DIR / "keys")))
# Exchange between nodes (docs/exchange.md): the hub is region 00.
PIAOTONG_NODE_ROLE = env_str("PIAOTONG_NODE_ROLE", "hub" if PIAOTONG_REGION == "00" else "regional")
PIAOTONG_NATS_URL = env_str("PIAOTONG_NATS_URL", "")
PIAOTONG_HUB_KEY_ID = env_str("PIAOTONG_HUB_KEY_ID", "")
PIAOTONG_NATS_REPLICAS = env_int("PIAOTONG_NATS_REPLICAS", 1)
PIAOTONG_SYNC_LAG_ALERT_SECONDS = env_int("PIAOTONG_SYNC_LAG_ALERT_SECONDS", 60)
PIAOTONG_OUTBOX_AGE_ALERT_SECONDS = env_int("PIAOTONG_OUTBOX_AGE_ALERT_SECONDS", 300)
PIAOTONG_MAX_BULK = env_int("PIAOTONG_MAX_BULK", 1000)
if not (len(PIAOTONG_REGION) == 2 and PIAOTONG_REGION.isdigit()):
    raise ImproperlyConfigured(f"PIAOTONG_REGION={PIAOTONG_REGION!r}: two digits, e.g. 11")
if not (len(PIAOTONG_CHANNEL) == 1 and PIAOTONG_CHANNEL.isdigit()):
    raise ImproperlyConfigured(f"PIAOTONG_CHANNEL={PIAOTONG_CHANNEL!r}: one digit, e.g. 2")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "ninja",
    "piaotong",
    "piaotong.accounts",
    "piaotong.ledger",
    "piaotong.exchange",
    "piaotong.invoices",
    "piaotong.documents",
    "piaotong.verification",
    "piaotong.deduction",
    "piaotong.reconciliation",
    "piaotong.filing",
    "piaotong.support",
    "piaotong.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "piaotong.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "piaotong.middleware.PreferredLanguageMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "piaotong.urls"
WSGI_APPLICATION = "piaotong.wsgi.application"

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
                "django.template.context_processors.i18n",
                "piaotong.context_processors.navigation",
            ],
        },
    },
]


def _database() -> dict[str, object]:
    url = os.environ.get("DATABASE_URL")
    if not url:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{VAR_DIR / 'piaotong.sqlite3'}"
    config: dict[str, object] = dict(dj_database_url.parse(url, conn_max_age=60))
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # Connections are kept per worker thread: closing SQLite's last connection checkpoints
        # the WAL to disk, ~20 ms on this kind of machine, on every request (docs/benchmarks.md).
        config["CONN_MAX_AGE"] = env_int("PIAOTONG_SQLITE_CONN_MAX_AGE", 60)
        config["OPTIONS"] = {
            # IMMEDIATE takes the write lock at BEGIN: a read-then-write transaction (number
            # allocation) cannot deadlock on lock upgrade, it waits for `timeout` instead.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
            "PRAGMA foreign_keys=ON; PRAGMA busy_timeout=20000;",
        }
        config["TEST"] = (
            {"NAME": str(VAR_DIR / "test.sqlite3")}
            if env_bool("PIAOTONG_TEST_SQLITE_FILE", False)
            else {}
        )
    elif config["ENGINE"] == "django.db.backends.postgresql":
        # Server-side binding sends parameters separately instead of quoting them into the SQL
        # text: measured 2x faster bulk inserts of JSON columns (docs/benchmarks.md).
        config["OPTIONS"] = {
            "server_side_binding": env_bool("PIAOTONG_PG_SERVER_SIDE_BINDING", True),
            # Prepared statements are parsed and planned once per connection: measured, that cut
            # PostgreSQL's CPU per verification to a third and per issue by 0.5 ms
            # (docs/benchmarks.md).
            # They live in the server session, so a pooler that hands each transaction to
            # another session needs them off (docs/operations.md).
            "prepare_threshold": env_prepare_threshold("PIAOTONG_PG_PREPARE_THRESHOLD", 5),
        }
    else:
        raise ImproperlyConfigured(
            f"DATABASE_URL: only sqlite:// and postgres:// are supported, got {url!r}"
        )
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "piaotong.accounts.passwords.BreachedPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Argon2id for new and changed passwords; the others only verify older hashes (and upgrade them
# to Argon2id at the next successful login).
PASSWORD_HASHERS = [
    "piaotong.accounts.passwords.Argon2idHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Uploaded qualification documents. Not served by URL: only an authority-checking view sends them.
MEDIA_ROOT = VAR_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
if env_bool("PIAOTONG_TESTING", False) or DEBUG:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}

# Invoice documents (PDF, OFD, XML) are rendered after the issuing transaction commits:
# "background" (a renderer thread per process), "inline", or "off" (rendered on first download
# or by `piaotong documents render`). Tests default to "off".
PIAOTONG_DOCUMENTS_RENDER = env_str(
    "PIAOTONG_DOCUMENTS_RENDER", "off" if env_bool("PIAOTONG_TESTING", False) else "background"
)

# Outgoing email (invitation links, invoice delivery). With no SMTP host configured, messages are
# written as files under var/mail/ instead of being sent, so nothing pretends to be delivered.
DEFAULT_FROM_EMAIL = env_str("PIAOTONG_MAIL_FROM", "票通 Piaotong <noreply@piaotong.invalid>")
EMAIL_TIMEOUT = env_int("PIAOTONG_SMTP_TIMEOUT", 10)
if os.environ.get("PIAOTONG_SMTP_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = env_str("PIAOTONG_SMTP_HOST", "")
    EMAIL_PORT = env_int("PIAOTONG_SMTP_PORT", 25)
    EMAIL_HOST_USER = env_str("PIAOTONG_SMTP_USER", "")
    EMAIL_HOST_PASSWORD = env_str("PIAOTONG_SMTP_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("PIAOTONG_SMTP_STARTTLS", False)
    EMAIL_USE_SSL = env_bool("PIAOTONG_SMTP_SSL", False)
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")

LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "invoices:dashboard"
LOGOUT_REDIRECT_URL = "accounts:login"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = 12 * 3600
CSRF_COOKIE_HTTPONLY = False  # htmx reads it to send X-CSRFToken on POSTs
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if env_bool("PIAOTONG_HTTPS", False):
    # Behind TLS (directly or via a proxy that sets X-Forwarded-Proto): HSTS and secure cookies.
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("PIAOTONG_MAX_REQUEST_BYTES", 10 * 1024 * 1024)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("PIAOTONG_LOG_LEVEL", "INFO")},
}
AUTH_USER_MODEL = "accounts.User"

# --- Authentication hardening (2FA, sessions, passwords) ---
# The two-step login, session timeouts and mandatory two-factor login: accounts.session_state,
# accounts.middleware, accounts.twofactor, accounts.throttle.
AUTHENTICATION_BACKENDS = ["piaotong.accounts.backends.AuthenticationBackend"]
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.messages.middleware.MessageMiddleware") + 1,
    "piaotong.accounts.middleware.LoginSessionMiddleware",
)
PIAOTONG_SESSION_IDLE_SECONDS = env_int("PIAOTONG_SESSION_IDLE_SECONDS", 30 * 60)
PIAOTONG_SESSION_ABSOLUTE_SECONDS = env_int("PIAOTONG_SESSION_ABSOLUTE_SECONDS", 12 * 3600)
if not 0 < PIAOTONG_SESSION_IDLE_SECONDS <= PIAOTONG_SESSION_ABSOLUTE_SECONDS:
    raise ImproperlyConfigured(
        "PIAOTONG_SESSION_IDLE_SECONDS must be positive and at most "
        "PIAOTONG_SESSION_ABSOLUTE_SECONDS"
    )
SESSION_COOKIE_AGE = PIAOTONG_SESSION_ABSOLUTE_SECONDS  # the cookie never outlives the login
# Login throttling counts failures per client IP: behind N reverse proxies that append to
# X-Forwarded-For, set this to N so the client's address is used rather than the proxy's.
PIAOTONG_TRUSTED_PROXIES = env_int("PIAOTONG_TRUSTED_PROXIES", 0)
if env_bool("PIAOTONG_HTTPS", False):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- Field encryption at rest ---
# Bank accounts, natural-person buyers' phone and email and TOTP secrets are stored encrypted
# (piaotong.fields; docs/security.md). "kid1:base64key,kid2:base64key", the current key first.
# Unset, a per-installation keyring is created in var/field_keys, like secret_key, so a fresh
# checkout runs; production sets it from the environment and keeps it like the backup key.
PIAOTONG_FIELD_KEYS = env_str("PIAOTONG_FIELD_KEYS", "").strip()
_field_keys_source = "PIAOTONG_FIELD_KEYS"
if not PIAOTONG_FIELD_KEYS:
    _field_keys_source = str(VAR_DIR / "field_keys")
    PIAOTONG_FIELD_KEYS = installation_secret(
        "field_keys", lambda: fieldcrypto.generate_key_line("local1")
    )
try:
    fieldcrypto.Keyring.parse(PIAOTONG_FIELD_KEYS, source=_field_keys_source)
except fieldcrypto.KeyringError as exc:
    raise ImproperlyConfigured(str(exc)) from None
