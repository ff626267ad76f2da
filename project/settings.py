"""Settings for the chat, read from the environment.

Every difference between deployments is an environment variable with a
development-safe default written where it is read; README.md lists them all.
Nothing set: SQLite in the project folder, the in-memory channel layer,
in-process presence, console email. REDIS_URL and DATABASE_URL turn the same
code into the multi-process deployment of docs/deploy.md.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

import dj_database_url
from csp import constants as csp_constants
from django.core.exceptions import ImproperlyConfigured

from chatrooms.protocol import MAX_FRAME_BYTES

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    """The variable as a stripped string, or the default when unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or default


def env_bool(name: str, default: bool) -> bool:
    """'1', 'true', 'yes', 'on' (any case) are true; '0', 'false', 'no', 'off' false."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1 or 0)")


def env_int(name: str, default: int, minimum: int = 0) -> int:
    """A whole number no smaller than `minimum`."""
    raw = env_str(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below its minimum {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; blanks dropped."""
    raw = env_str(name)
    if not raw:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def parse_rate(raw: str) -> tuple[int, float] | None:
    """'20/10s' -> (20, 10.0) messages per seconds; '0' or 'off' -> None (no limit)."""
    raw = raw.strip().lower()
    if raw in {"0", "off", "none"}:
        return None
    match = re.fullmatch(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(s|m|h)?", raw)
    if not match or int(match.group(1)) < 1:
        raise ImproperlyConfigured(f"CHAT_RATE_LIMIT={raw!r} is not like '20/10s', '60/m' or '0'")
    count = int(match.group(1))
    amount = float(match.group(2) or 1)
    unit = {"s": 1, "m": 60, "h": 3600}[match.group(3) or "s"]
    if amount * unit <= 0:
        raise ImproperlyConfigured(f"CHAT_RATE_LIMIT={raw!r} has an empty window")
    return count, amount * unit


# --- Core --------------------------------------------------------------------

# Debug is on by default so that the first run needs nothing set; every
# deployment sets DJANGO_DEBUG=0 (docs/deploy.md), and then a secret key is
# required.
DEBUG = env_bool("DJANGO_DEBUG", True)

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG=0 "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))')"
        )
    SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # daphne first: its runserver serves HTTP and WebSockets from one process.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "allauth",
    "allauth.account",
    "crispy_forms",
    "crispy_bootstrap5",
    "accounts",
    "chatrooms",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Outermost but for static files: every page, redirect and error below
    # it gets the header (Content-Security-Policy block below).
    "project.csp.CSPMiddleware",
    # Before SessionMiddleware: it acts once the session is saved.
    "chatrooms.sessions.PasswordChangeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"
WSGI_APPLICATION = None

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
                # {{ CSP_NONCE }}: the response's nonce, for inline blocks.
                "csp.context_processors.nonce",
            ],
        },
    },
]

# --- Database ------------------------------------------------------------------

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers go on while one writer writes; IMMEDIATE takes the
    # write lock at BEGIN, so concurrent writers queue (up to `timeout`)
    # instead of failing with "database is locked" halfway through.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Under ASGI, Django's persistent connections are per thread and leak
    # across the sync_to_async pool; psycopg's pool is the supported way.
    if env_bool("DATABASE_POOL", True):
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": env_int("DATABASE_POOL_MAX", 20, minimum=1),
            # How long a request or socket waits for a connection. Short, so
            # that while the database is unreachable a handshake or a message
            # fails fast (socket close 1013, error `unavailable`) instead of
            # hanging: a healthy pool hands one out in well under a second.
            "timeout": env_int("DATABASE_POOL_TIMEOUT", 2, minimum=1),
            # psycopg_pool retries a failed connection after 1, 2, 4, 8 ... s
            # until this many seconds have passed, then gives it up; the next
            # request starts a fresh attempt at once. The default (5 minutes)
            # let the wait after a long outage grow past half a minute;
            # 5 s keeps healing within a few seconds of the database's return.
            "reconnect_timeout": 5,
        }
        # A connection attempt to an unreachable host gives up as fast.
        DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 2)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, cache, presence -----------------------------------------

REDIS_URL = env_str("REDIS_URL")
# Every key this site writes in Redis starts with this prefix, so several
# sites (or test runs) can share one Redis without meeting.
REDIS_PREFIX = env_str("REDIS_PREFIX", "chat")

if REDIS_URL:
    # The chat socket sends nothing through the channel layer: room frames and
    # control events go through chatrooms/hub.py (one Redis pub/sub channel
    # per room and per user). The layer is configured for /healthz, which
    # checks it, and for any consumer that wants one; channels-redis's
    # defaults (capacity, expiry, group expiry) suit that.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        # redis-py 8 times a socket out after 5 s, the same as
                        # channels-redis's blocking receive: a receive waiting
                        # that long would die with TimeoutError. Give it room.
                        "socket_timeout": 30,
                        "socket_connect_timeout": 5,
                        # redis-py 8 caps a pool at 100 connections, which a
                        # burst of concurrent layer calls exhausts.
                        "max_connections": 2000,
                    }
                ],
                "prefix": f"{REDIS_PREFIX}:asgi",
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"{REDIS_PREFIX}:cache",
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Authentication ----------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/chats/"
LOGOUT_REDIRECT_URL = "/"

ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
# ASCII usernames only (accounts/validators.py): the @username shown beside
# display names must not admit look-alike letters from other scripts.
ACCOUNT_USERNAME_VALIDATORS = "accounts.validators.username_validators"
# "optional": a mail is sent, the account works at once. "mandatory": no
# sign-in until the address is confirmed.
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "optional")
if ACCOUNT_EMAIL_VERIFICATION not in {"none", "optional", "mandatory"}:
    raise ImproperlyConfigured("ACCOUNT_EMAIL_VERIFICATION must be none, optional or mandatory")
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_SESSION_REMEMBER = None
# allauth's defaults spelled out: they live in the cache, which is Redis
# (shared by every process) when REDIS_URL is set.
# ACCOUNT_RATE_LIMITS=0 turns them off: only for load tests that sign in
# hundreds of users from one address (bench/).
ACCOUNT_RATE_LIMITS = env_bool("ACCOUNT_RATE_LIMITS", True) and {
    "login_failed": "10/m/ip,5/5m/key",
    "login": "30/m/ip",
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "change_password": "5/m/user",
    "confirm_email": "1/3m/key",
}
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Chat] "

# --- Email ---------------------------------------------------------------------------

EMAIL_BACKEND = env_str(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if env_str("EMAIL_HOST")
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", EMAIL_PORT == 587)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", EMAIL_PORT == 465)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "chat@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Security ----------------------------------------------------------------------

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the chat client reads it for fetch() POSTs
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Behind a TLS-terminating proxy (nginx) that sets X-Forwarded-Proto.
if env_bool("DJANGO_BEHIND_PROXY", not DEBUG):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = env_bool("DJANGO_USE_X_FORWARDED_HOST", False)
# HTTPS is the default whenever debug is off; DJANGO_SECURE=0 serves plain
# HTTP (a LAN trial), at the price of a noisy `check --deploy`.
SECURE = env_bool("DJANGO_SECURE", not DEBUG)
SESSION_COOKIE_SECURE = SECURE
CSRF_COOKIE_SECURE = SECURE
SECURE_SSL_REDIRECT = SECURE and env_bool("DJANGO_SSL_REDIRECT", True)
# Health checks come from the proxy or the orchestrator over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000 if SECURE else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
# Sending "preload" submits nothing; it lets the owner submit the domain.
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", SECURE)

# daphne's runserver (`make run`) refuses larger WebSocket frames itself,
# closing with 1009; production passes the same limits on daphne's command
# line (docs/deploy.md). The consumer checks again for any other server.
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = MAX_FRAME_BYTES
DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = MAX_FRAME_BYTES

# --- Content-Security-Policy -------------------------------------------------------

# A strict policy on every response (project.csp.CSPMiddleware, django-csp):
# scripts, styles, images, fonts and connections from this site only; no
# inline script or style but the blocks that carry the response's nonce
# ({{ CSP_NONCE }}, e.g. the room page's import map), no style attributes,
# no inline event handlers, no eval. The middleware adds this host's ws:/wss:
# origin to connect-src. CHAT_CSP_REPORT_ONLY=1 sends the same policy as
# Content-Security-Policy-Report-Only, to try it on a live site before
# enforcing it; CHAT_CSP_REPORT_URI is where browsers post violations.
CHAT_CSP_REPORT_ONLY = env_bool("CHAT_CSP_REPORT_ONLY", False)
CHAT_CSP_REPORT_URI = env_str("CHAT_CSP_REPORT_URI")
# One URL: a space, ';' or ',' would end the directive and start another.
if re.search(r"[\s;,]", CHAT_CSP_REPORT_URI):
    raise ImproperlyConfigured(f"CHAT_CSP_REPORT_URI={CHAT_CSP_REPORT_URI!r} is not one URL")
_CSP = {
    "DIRECTIVES": {
        "default-src": [csp_constants.SELF],
        "script-src": [csp_constants.SELF, csp_constants.NONCE],
        "style-src": [csp_constants.SELF, csp_constants.NONCE],
        # Bootstrap draws its icons (menu toggler, close button, select
        # arrow, check marks) as data: SVG images in its CSS.
        "img-src": [csp_constants.SELF, "data:"],
        "connect-src": [csp_constants.SELF],
        "font-src": [csp_constants.SELF],
        "object-src": [csp_constants.NONE],
        "base-uri": [csp_constants.SELF],
        "form-action": [csp_constants.SELF],
        "frame-ancestors": [csp_constants.NONE],
        **({"report-uri": [CHAT_CSP_REPORT_URI]} if CHAT_CSP_REPORT_URI else {}),
    }
}
CONTENT_SECURITY_POLICY = None if CHAT_CSP_REPORT_ONLY else _CSP
CONTENT_SECURITY_POLICY_REPORT_ONLY = _CSP if CHAT_CSP_REPORT_ONLY else None

# --- Static files ---------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Hashed names with far-future caching; needs `collectstatic`
        # before running with debug off (the run command does it).
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage",
    },
}

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logging (docs/operations.md, "Reading the logs") ---------------------------------

# "text": one readable line per record; "json": one JSON object per line, with
# the `extra` fields of the chat.socket lines (event, socket_id, user_id,
# room, reason, code) as keys, for a log shipper.
CHAT_LOG_FORMAT = env_str("CHAT_LOG_FORMAT", "text").lower()
if CHAT_LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"CHAT_LOG_FORMAT={CHAT_LOG_FORMAT!r} is not text or json")
_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
DJANGO_LOG_LEVEL = env_str("DJANGO_LOG_LEVEL", "INFO").upper()
# chat.socket: refusals at INFO, errors at ERROR; DEBUG adds a line per socket
# opened and closed, which a connect storm multiplies (hence not by default).
CHAT_SOCKET_LOG_LEVEL = env_str("CHAT_SOCKET_LOG_LEVEL", "INFO").upper()
for _name, _level in (
    ("DJANGO_LOG_LEVEL", DJANGO_LOG_LEVEL),
    ("CHAT_SOCKET_LOG_LEVEL", CHAT_SOCKET_LOG_LEVEL),
):
    if _level not in _LOG_LEVELS:
        raise ImproperlyConfigured(f"{_name}={_level!r} is not one of {sorted(_LOG_LEVELS)}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",
        },
    },
    # Invite tokens and account keys in logged paths are blanked (chatrooms/metrics.py).
    "filters": {"redact": {"()": "chatrooms.metrics.RedactSecrets"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": CHAT_LOG_FORMAT,
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": DJANGO_LOG_LEVEL},
    "loggers": {
        # Django's own handlers (a console one while DEBUG is on, mail_admins)
        # would write its lines again, unformatted and unfiltered: the root's only.
        "django": {"handlers": []},
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "chat.socket": {"level": CHAT_SOCKET_LOG_LEVEL},
    },
}

# --- Metrics (docs/operations.md) ---------------------------------------------------

# Who may read /metrics: "staff" (signed-in staff; anyone else gets 404),
# "internal" (a request straight from an address of CHAT_METRICS_ALLOW, never
# one that came through a proxy: it carries X-Forwarded-For), or "off" (404).
CHAT_METRICS = env_str("CHAT_METRICS", "staff").lower()
if CHAT_METRICS not in {"off", "staff", "internal"}:
    raise ImproperlyConfigured(f"CHAT_METRICS={CHAT_METRICS!r} is not off, staff or internal")
# Addresses or networks (10.0.0.0/8) that may read /metrics in "internal" mode.
CHAT_METRICS_ALLOW = env_list("CHAT_METRICS_ALLOW", ["127.0.0.1", "::1"])
for _address in CHAT_METRICS_ALLOW:
    try:
        ipaddress.ip_network(_address, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"CHAT_METRICS_ALLOW: {_address!r} is not an address or network"
        ) from None
# prometheus_client's own variable, read by it when the process starts: set,
# every process writes its metrics to files there and /metrics sums them all
# (uvicorn --workers); unset, each process serves its own.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR")
if "PROMETHEUS_MULTIPROC_DIR" in os.environ and not PROMETHEUS_MULTIPROC_DIR:
    # prometheus_client would take it as set, and fail at its first metric.
    raise ImproperlyConfigured("PROMETHEUS_MULTIPROC_DIR is set but empty: unset it")
if PROMETHEUS_MULTIPROC_DIR and not Path(PROMETHEUS_MULTIPROC_DIR).is_dir():
    raise ImproperlyConfigured(
        f"PROMETHEUS_MULTIPROC_DIR={PROMETHEUS_MULTIPROC_DIR!r} is not a directory"
    )
# A scraper reads a process's port directly, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [*SECURE_REDIRECT_EXEMPT, r"^metrics$"]

# --- Chat limits (README.md, Configuration) ----------------------------------------

CHAT_MAX_MESSAGE_CHARS = env_int("CHAT_MAX_MESSAGE_CHARS", 4000, minimum=1)
CHAT_RATE_LIMIT = parse_rate(env_str("CHAT_RATE_LIMIT", "20/10s"))
CHAT_HISTORY_PAGE = env_int("CHAT_HISTORY_PAGE", 50, minimum=1)
CHAT_CATCHUP_LIMIT = env_int("CHAT_CATCHUP_LIMIT", 500, minimum=1)
CHAT_PRESENCE_TIMEOUT = env_int("CHAT_PRESENCE_TIMEOUT", 30, minimum=5)
# Seconds between two checks of the sessions of open sockets: a socket whose
# session expired, was deleted or lost its password is closed within this
# (plus one check) (chatrooms/sessions.py).
CHAT_SESSION_CHECK_SECONDS = env_int("CHAT_SESSION_CHECK_SECONDS", 60, minimum=1)
# Seconds of silence on the Redis subscription before it is PINGed; no answer
# for twice as long and the link counts as dead (chatrooms/hub.py).
CHAT_REDIS_KEEPALIVE = env_int("CHAT_REDIS_KEEPALIVE", 15, minimum=1)
# What a handshake reads (session -> user, the user's memberships, the room;
# hello's latest messages) is kept in the process for at most this many
# seconds, and dropped at once by the events that change it
# (chatrooms/access.py, docs/reliability.md); 0 turns it off.
CHAT_CONNECT_CACHE_SECONDS = env_int("CHAT_CONNECT_CACHE_SECONDS", 30)
CHAT_CONNECT_CACHE_SIZE = env_int("CHAT_CONNECT_CACHE_SIZE", 10_000, minimum=1)

# --- Per-user caps (chatrooms/ratelimit.py, chatrooms/presence.py) ---
# A user's open sockets across all rooms and processes; the one over it is
# closed with 4429 "too_many_sockets" (docs/protocol.md). 0: no cap.
CHAT_MAX_SOCKETS_PER_USER = env_int("CHAT_MAX_SOCKETS_PER_USER", 30)


def _env_rate(name: str, default: str) -> tuple[int, float] | None:
    """parse_rate, with the error naming this variable."""
    try:
        return parse_rate(env_str(name, default))
    except ImproperlyConfigured:
        raise ImproperlyConfigured(
            f"{name}={env_str(name)!r} is not like '10/h', '30/10s', '60/m' or '0'"
        ) from None


# Rooms and invite links a user may create per window, by every path (the
# admin creates neither); the user's messages across all their rooms, beside
# CHAT_RATE_LIMIT's per-room count. "0" turns one off.
CHAT_ROOM_CREATE_RATE = _env_rate("CHAT_ROOM_CREATE_RATE", "10/h")
CHAT_INVITE_CREATE_RATE = _env_rate("CHAT_INVITE_CREATE_RATE", "30/h")
CHAT_USER_RATE_LIMIT = _env_rate("CHAT_USER_RATE_LIMIT", "30/10s")
# --- end of per-user caps ---
