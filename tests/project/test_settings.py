"""Settings come from the environment, with defaults that need nothing installed.

Each case imports project.settings in a fresh interpreter with a chosen
environment, as a deployment would.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRINT_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
db = settings.DATABASES["default"]
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "ENGINE": db["ENGINE"], "NAME": str(db["NAME"]),
    "LAYER": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "LAYER_HOSTS": settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("hosts"),
    "CACHE": settings.CACHES["default"]["BACKEND"],
    "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
    "EMAIL_BACKEND": settings.EMAIL_BACKEND,
    "VERIFY": settings.ACCOUNT_EMAIL_VERIFICATION,
    "CHAT": [settings.CHAT_MAX_MESSAGE_CHARS, settings.CHAT_RATE_LIMIT,
             settings.CHAT_HISTORY_PAGE, settings.CHAT_CATCHUP_LIMIT,
             settings.CHAT_PRESENCE_TIMEOUT],
    "SECURE": [settings.SESSION_COOKIE_SECURE, settings.SECURE_SSL_REDIRECT,
               settings.SECURE_HSTS_SECONDS],
}))
"""
# Variables a developer or CI may have set that would change the answers.
CLEARED = [
    "DATABASE_URL",
    "REDIS_URL",
    "DJANGO_DEBUG",
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "EMAIL_HOST",
    "DJANGO_EMAIL_BACKEND",
    "ACCOUNT_EMAIL_VERIFICATION",
    "DJANGO_SECURE",
    "CHAT_MAX_MESSAGE_CHARS",
    "CHAT_RATE_LIMIT",
    "CHAT_HISTORY_PAGE",
    "CHAT_CATCHUP_LIMIT",
    "CHAT_PRESENCE_TIMEOUT",
    "DJANGO_BEHIND_PROXY",
]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in CLEARED}
    environ.update(DJANGO_SETTINGS_MODULE="project.settings", **env)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def read_settings(**env: str) -> dict:
    result = run_python(PRINT_SETTINGS, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return run_python(
        "import sys; from django.core.management import execute_from_command_line; "
        f"execute_from_command_line(['manage.py', *{list(args)!r}])",
        **env,
    )


def test_defaults_need_nothing_installed():
    values = read_settings()
    assert values["DEBUG"] is True
    assert values["ENGINE"] == "django.db.backends.sqlite3"
    assert values["NAME"] == str(ROOT / "db.sqlite3")
    assert values["LAYER"] == "channels.layers.InMemoryChannelLayer"
    assert values["CACHE"].endswith("LocMemCache")
    assert values["EMAIL_BACKEND"].endswith("console.EmailBackend")
    assert values["VERIFY"] == "optional"
    assert values["CHAT"] == [4000, [20, 10.0], 50, 500, 30]


def test_environment_overrides_every_setting():
    values = read_settings(
        DATABASE_URL="postgres://chat:pw@db.internal:5432/chatdb",
        REDIS_URL="redis://cache.internal:6379/3",
        DJANGO_ALLOWED_HOSTS="chat.example.com, www.chat.example.com",
        EMAIL_HOST="smtp.example.com",
        ACCOUNT_EMAIL_VERIFICATION="mandatory",
        CHAT_MAX_MESSAGE_CHARS="100",
        CHAT_RATE_LIMIT="0",
        CHAT_HISTORY_PAGE="20",
        CHAT_CATCHUP_LIMIT="1000",
        CHAT_PRESENCE_TIMEOUT="15",
    )
    assert values["ENGINE"] == "django.db.backends.postgresql"
    assert values["NAME"] == "chatdb"
    assert values["LAYER"] == "channels_redis.core.RedisChannelLayer"
    host = values["LAYER_HOSTS"][0]
    assert host["address"] == "redis://cache.internal:6379/3"
    # Past redis-py 8's 5 s socket timeout and 100-connection pool.
    assert host["socket_timeout"] > 5 and host["max_connections"] > 100
    assert values["CACHE"].endswith("RedisCache")
    assert values["ALLOWED_HOSTS"] == ["chat.example.com", "www.chat.example.com"]
    assert values["EMAIL_BACKEND"].endswith("smtp.EmailBackend")
    assert values["VERIFY"] == "mandatory"
    assert values["CHAT"] == [100, None, 20, 1000, 15]


@pytest.mark.parametrize(
    "variable, value",
    [
        ("CHAT_RATE_LIMIT", "lots"),
        ("CHAT_MAX_MESSAGE_CHARS", "-3"),
        ("DJANGO_DEBUG", "maybe"),
        ("ACCOUNT_EMAIL_VERIFICATION", "sometimes"),
    ],
)
def test_bad_values_stop_the_start_with_a_clear_error(variable, value):
    result = run_python(PRINT_SETTINGS, **{variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr


def test_rate_limit_forms():
    from project.settings import parse_rate

    assert parse_rate("20/10s") == (20, 10.0)
    assert parse_rate("60/m") == (60, 60.0)
    assert parse_rate("100/2h") == (100, 7200.0)
    assert parse_rate("off") is None


def test_production_refuses_to_start_without_secret_key():
    result = run_python(PRINT_SETTINGS, DJANGO_DEBUG="0", DJANGO_ALLOWED_HOSTS="chat.example.com")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_production_is_secure_by_default():
    values = read_settings(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="chat.example.com",
    )
    assert values["DEBUG"] is False
    assert values["SECURE"] == [True, True, 31536000]


def test_deploy_check_is_clean(tmp_path):
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="chat.example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.postgres
def test_database_url_for_postgresql_really_connects(postgres_url):
    code = (
        "import django; django.setup(); from django.db import connection; "
        "cursor = connection.cursor(); cursor.execute('SELECT version()'); "
        "print(connection.vendor, cursor.fetchone()[0])"
    )
    result = run_python(code, DATABASE_URL=postgres_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("postgresql PostgreSQL ")


@pytest.mark.redis
def test_redis_url_gives_a_working_channel_layer(redis_url):
    code = (
        "import asyncio, django; django.setup()\n"
        "from channels.layers import get_channel_layer\n"
        "async def main():\n"
        "    layer = get_channel_layer()\n"
        "    name = await layer.new_channel()\n"
        "    await layer.send(name, {'type': 'hello.world', 'n': 7})\n"
        "    print(type(layer).__name__, (await layer.receive(name))['n'])\n"
        "asyncio.run(main())\n"
    )
    result = run_python(code, REDIS_URL=redis_url, REDIS_PREFIX="chat-test-settings")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["RedisChannelLayer", "7"]
