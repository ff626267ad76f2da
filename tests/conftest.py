"""Shared fixtures: factories for test data, and the real services.

Tests that need Redis or PostgreSQL use `redis_url` / `postgres_url`: they
skip with the reason when the service is unreachable on a laptop, and fail
when CI=true, so that CI always runs them.
"""

from __future__ import annotations

import itertools
import os
import socket
import uuid
from urllib.parse import urlparse

import pytest

# One Redis key prefix per test run: runs sharing one Redis never meet.
RUN_PREFIX = f"chat-test-{uuid.uuid4().hex[:12]}"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def pytest_configure(config):
    from django.conf import settings

    settings.REDIS_PREFIX = RUN_PREFIX
    if "CONFIG" in settings.CHANNEL_LAYERS["default"]:
        settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = f"{RUN_PREFIX}:asgi"
    settings.CACHES["default"]["KEY_PREFIX"] = f"{RUN_PREFIX}:cache"
    # Hashing a password costs ~0.3 s by design; tests make hundreds of users.
    # PBKDF2 stays listed so that the demo fixtures' hashes still verify.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]


def _reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=1):
            return True
    except OSError:
        return False


def _require(service: str, url: str, variable: str) -> str:
    if _reachable(url):
        return url
    reason = f"{service} is not reachable at {url} (set {variable})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture
def on_postgres():
    """Skip unless the tests run on PostgreSQL (DATABASE_URL); fail so under CI=true."""
    from django.db import connection

    if connection.vendor != "postgresql":
        reason = "PostgreSQL only; CI runs this with DATABASE_URL on PostgreSQL"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A reachable Redis: TEST_REDIS_URL, else REDIS_URL, else the local default."""
    url = os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    return _require("Redis", url, "TEST_REDIS_URL")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A reachable PostgreSQL server's maintenance database."""
    url = os.environ.get("TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    return _require("PostgreSQL", url, "TEST_POSTGRES_URL")


def redis_layer_settings(url: str, prefix: str = RUN_PREFIX) -> dict:
    """CHANNEL_LAYERS for a real Redis: production's own layer settings
    (project/settings.py) when REDIS_URL configured them, else the same
    options spelled out, pointed at `url` and this run's prefix."""
    from django.conf import settings

    current = settings.CHANNEL_LAYERS["default"]
    if current["BACKEND"] == "channels_redis.core.RedisChannelLayer":
        host = {**current["CONFIG"]["hosts"][0], "address": url}
    else:
        host = {"address": url, "socket_timeout": 30, "max_connections": 2000}
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [host], "prefix": f"{prefix}:asgi"},
        }
    }


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate-limit counters (allauth's, ours) never leak from one test to the next.

    On Redis only this run's keys are deleted: the server is shared.
    """
    yield
    from django.conf import settings
    from django.core.cache import cache

    if settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
        client = cache._cache.get_client(write=True)
        for key in client.scan_iter(match=f"{settings.CACHES['default']['KEY_PREFIX']}*"):
            client.delete(key)
    else:
        cache.clear()


# --- Per-user caps (chatrooms/ratelimit.py) ---
@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """chatrooms.ratelimit's counts (messages, rooms and invites created) start empty.

    A rolled-back test gives its user ids back on SQLite, so the next test's
    alice would inherit this one's count. This process's counts are dropped;
    this run's Redis counts too, but only then: on PostgreSQL ids never repeat.
    """
    from django.conf import settings
    from django.db import connection

    from chatrooms import ratelimit

    ratelimit._local.clear()
    yield
    ratelimit._local.clear()
    if settings.REDIS_URL and connection.vendor != "postgresql":
        from chatrooms.redis import key, sync_redis

        client = sync_redis()
        for name in client.scan_iter(match=key("rl", "*"), count=1000):
            client.delete(name)


# --- end of per-user caps ---


@pytest.fixture(autouse=True)
def _writer_disconnected():
    """The group-commit writer's own database connection ends with the test
    (each test has its own event loop; the test database can then be dropped)."""
    yield
    from chatrooms.writer import writer

    writer._close_pg()


@pytest.fixture(scope="session", autouse=True)
def _test_database_released(django_db_setup, django_db_blocker):
    """Nothing holds the test database when pytest-django drops it.

    Server processes that live-server tests started, and pooled connections,
    may still be connected at the end; the drop then fails with "being
    accessed by other users" and leaves the database behind on a shared server.
    """
    yield
    from django.db import connection

    # pytest-django creates the test database only when a collected test
    # needs it (a browser-only run does not): then there is nothing to free.
    if connection.vendor != "postgresql" or not connection.settings_dict["NAME"].startswith(
        "test_"
    ):
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [connection.settings_dict["NAME"]],
        )


_counter = itertools.count(1)


@pytest.fixture
def user_factory(db):
    """Make users: user_factory(username="alice", password=..., **fields)."""
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    def make(username: str | None = None, password: str = "a-good-passphrase-42", **fields):
        n = next(_counter)
        username = username or f"user{n}"
        fields.setdefault("email", f"{username}@example.com")
        user = get_user_model().objects.create_user(username=username, password=password, **fields)
        EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
        user.raw_password = password
        return user

    return make


@pytest.fixture
def room_factory(db):
    """Make rooms: room_factory(name="General", owner=user, is_private=False, ...)."""
    from chatrooms.models import Membership, Room

    def make(name: str | None = None, *, owner=None, members=(), **fields):
        n = next(_counter)
        name = name or f"Room {n}"
        fields.setdefault("slug", f"room-{n}")
        room = Room.objects.create(name=name, created_by=owner, **fields)
        if owner is not None:
            Membership.objects.create(room=room, user=owner, role=Membership.Role.OWNER)
        for member in members:
            Membership.objects.create(room=room, user=member)
        return room

    return make


@pytest.fixture
def message_factory(db):
    """Make messages: message_factory(room, author, body="...")."""
    from chatrooms.models import Message

    def make(room, author, body: str | None = None, **fields):
        return Message.objects.create(
            room=room, author=author, body=body or f"message {next(_counter)}", **fields
        )

    return make
