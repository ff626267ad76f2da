"""Logs (project/settings.py LOGGING, chatrooms/metrics.py): plain text by default,
JSON lines with CHAT_LOG_FORMAT=json, and never a message body, a cookie, a
session key or an invite token, whatever the format or level."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
import textwrap

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from tests.chatrooms.conftest import open_socket
from tests.project.test_settings import PRINT_SETTINGS, run_python

EMIT = textwrap.dedent(
    """
    import logging, django
    django.setup()
    from chatrooms import metrics
    metrics.socket_refused("banned", room="general", user_id=7)
    metrics.socket_opened(socket_id="abc.1", user_id=7, room="general")
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        metrics.socket_log.exception(
            "frame handler failed on socket %s", "abc.1",
            extra=metrics.socket_fields("error", socket_id="abc.1", user_id=7, room="general"),
        )
    logging.getLogger("django.request").warning("Gone: %s", "/chats/invite/T0KEN-live/")
    """
)


def emitted(**env: str) -> list[str]:
    defaults = {"CHAT_LOG_FORMAT": "", "CHAT_SOCKET_LOG_LEVEL": "", "DJANGO_LOG_LEVEL": ""}
    result = run_python(EMIT, **{**defaults, **env})
    assert result.returncode == 0, result.stderr
    return result.stderr.strip().splitlines()


def test_text_is_the_default_one_readable_line_per_record():
    lines = emitted()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(
        stamp + r" INFO chat\.socket socket refused \(banned\): room general, user 7", lines[0]
    ), lines[0]
    # Socket lifecycle lines are DEBUG: not written by default.
    assert not any("open" in line for line in lines)
    assert re.fullmatch(
        stamp + r" ERROR chat\.socket frame handler failed on socket abc\.1", lines[1]
    )
    assert lines[2] == "Traceback (most recent call last):"
    assert lines[-1].endswith("WARNING django.request Gone: /chats/invite/[redacted]/")


def test_json_lines_parse_and_carry_the_fields():
    lines = emitted(CHAT_LOG_FORMAT="json", CHAT_SOCKET_LOG_LEVEL="debug")
    records = [json.loads(line) for line in lines]  # one JSON object per line, traceback included
    refused, opened, error, gone = records
    assert refused["level"] == "INFO"
    assert refused["logger"] == "chat.socket"
    assert isinstance(refused["process"], int)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", refused["time"])
    assert refused["message"] == "socket refused (banned): room general, user 7"
    assert {k: refused[k] for k in ("event", "reason", "room", "user_id")} == {
        "event": "refused",
        "reason": "banned",
        "room": "general",
        "user_id": 7,
    }
    assert opened["level"] == "DEBUG"
    assert (opened["event"], opened["socket_id"], opened["user_id"]) == ("open", "abc.1", 7)
    assert error["level"] == "ERROR"
    assert (error["event"], error["socket_id"], error["room"]) == ("error", "abc.1", "general")
    assert "RuntimeError: a bug" in error["exc_info"]
    assert gone["message"] == "Gone: /chats/invite/[redacted]/"


@pytest.mark.parametrize(
    "variable, value", [("CHAT_LOG_FORMAT", "xml"), ("CHAT_SOCKET_LOG_LEVEL", "loud")]
)
def test_bad_log_settings_stop_the_start(variable, value):
    result = run_python(PRINT_SETTINGS, **{variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr


# --- What a log line never carries ----------------------------------------------------------

BODY = "BODY-7f3a9c-never-logged"
EDITED = "EDIT-51be02-never-logged"
BOGUS_COOKIE = "BOGUS-cookie-2c9d-never-logged"
TOKEN = "TOKEN-e4a1-never-logged"


@pytest.fixture
def captured():
    """Everything logged, by any logger at any level, in both formats as configured."""
    from django.conf import settings

    import project.asgi  # noqa: F401 - its django.setup() configures logging anew: before ours

    configurator = logging.config.DictConfigurator(settings.LOGGING)
    streams, handlers = [], []
    for name in ("text", "json"):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(configurator.configure_formatter(settings.LOGGING["formatters"][name]))
        handler.addFilter(configurator.configure_filter(settings.LOGGING["filters"]["redact"]))
        streams.append(stream)
        handlers.append(handler)
    root, socket_log = logging.getLogger(), logging.getLogger("chat.socket")
    levels = root.level, socket_log.level
    root.setLevel(logging.DEBUG)
    socket_log.setLevel(logging.DEBUG)
    for handler in handlers:
        root.addHandler(handler)
    yield lambda: "".join(stream.getvalue() for stream in streams)
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(levels[0])
    socket_log.setLevel(levels[1])


@pytest.mark.django_db(transaction=True)
async def test_logs_never_carry_bodies_cookies_session_keys_or_invite_tokens(
    captured, user_factory, room_factory
):
    from chatrooms.models import Invite, Membership
    from tests.chatrooms.conftest import session_cookie

    alice = await database_sync_to_async(user_factory)(username="alice")
    bob = await database_sync_to_async(user_factory)(username="bob")
    room = await database_sync_to_async(room_factory)("General", owner=alice, slug="general")
    cookie = await database_sync_to_async(session_cookie)(alice)

    accepted, sock = await open_socket(alice, room.slug, cookie=cookie)
    assert accepted
    await sock.recv_type("hello")
    await sock.send({"type": "chat.message", "message": BODY, "client_id": "c1"})
    stored = await sock.recv_type("chat.message")
    await sock.send({"type": "chat.edit", "id": stored["id"], "message": EDITED})
    await sock.recv_type("chat.edit")
    await sock.send('{"type": "chat.message", "message": "' + BODY)  # bad JSON, answered
    assert (await sock.recv_type("error"))["code"] == "bad_json"
    # Refusals that carry a cookie: a foreign origin, and a session that does not exist.
    assert not (await open_socket(alice, room.slug, cookie=cookie, origin=b"http://evil.test"))[0]
    assert not (await open_socket(bob, room.slug, cookie=BOGUS_COOKIE))[0]
    await sock.close()
    # A banned user opening a live invite link: 403, which Django logs with its path.
    await database_sync_to_async(Invite.objects.create)(room=room, token=TOKEN, created_by=alice)
    await database_sync_to_async(Membership.objects.create)(room=room, user=bob, is_banned=True)

    def open_invite() -> int:
        client = Client()
        client.force_login(bob)
        return client.get(f"/chats/invite/{TOKEN}/").status_code

    assert await database_sync_to_async(open_invite)() == 403

    text = captured()
    # The capture works: the socket's story is there, in both formats.
    assert "socket refused (origin)" in text and '"reason": "anonymous"' in text
    assert '"event": "open"' in text and '"event": "close"' in text
    assert "/chats/invite/[redacted]/" in text  # Django's 403 line, token blanked
    for secret in (BODY, EDITED, cookie, BOGUS_COOKIE, TOKEN):
        assert secret not in text, secret
