"""The chat's metrics move, and its chat.socket lines are written, where things happen:
through real sockets on the real ASGI stack (in memory and on Redis), a real
outbox and a real Redis link that dies and comes back (chatrooms/metrics.py).
"""

from __future__ import annotations

import json
import logging

import pytest
from channels.db import database_sync_to_async
from prometheus_client import REGISTRY

import project.asgi  # noqa: F401 - its django.setup() configures logging: before caplog does
from chatrooms import metrics, protocol
from chatrooms.consumers import PROCESS_TAG
from chatrooms.hub import OUTBOX_LIMIT, Hub, Outbox
from chatrooms.models import Membership
from tests.chatrooms.conftest import eventually, open_socket
from tests.chatrooms.test_hub import FakeSocket
from tests.faults import own_redis  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True)]


def value(name: str, **labels: str) -> float:
    """The metric's current value in this process (0 before its first sample)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """How far each named sample moved since this was made."""

    def __init__(self, *samples: tuple[str, dict]):
        self.start = {
            (name, tuple(labels.items())): value(name, **labels) for name, labels in samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        return value(name, **labels) - self.start[(name, tuple(labels.items()))]


# --- A message's way: stored, delivered, timed -----------------------------------------


async def test_a_message_counts_stored_delivered_and_its_latency(layer, room, alice, bob, connect):
    delta = Delta(
        ("chat_messages_stored_total", {}),
        ("chat_frames_delivered_total", {}),
        ("chat_delivery_latency_seconds_count", {}),
        ("chat_delivery_latency_seconds_sum", {}),
    )
    a, _ = await connect(alice, room)
    b, _ = await connect(bob, room)
    await a.send({"type": "chat.message", "message": "counted", "client_id": "m1"})
    await b.recv_type("chat.message")
    await a.recv_type("chat.message")
    await eventually(lambda: delta("chat_delivery_latency_seconds_count") == 1)
    assert delta("chat_messages_stored_total") == 1
    # The message reached both sockets (presence frames may add more).
    assert delta("chat_frames_delivered_total") >= 2
    assert delta("chat_delivery_latency_seconds_sum") > 0

    # A retry of the same client_id is broadcast again but stores nothing.
    await a.send({"type": "chat.message", "message": "counted", "client_id": "m1"})
    await b.recv_type("chat.message")
    await eventually(lambda: delta("chat_delivery_latency_seconds_count") == 2)
    assert delta("chat_messages_stored_total") == 1


async def test_open_sockets_go_up_and_back_down(layer, room, alice, bob, connect):
    start = value("chat_sockets_open")
    a, _ = await connect(alice, room)
    b, _ = await connect(bob, room)
    assert value("chat_sockets_open") == start + 2
    await a.close()
    await b.close()
    await eventually(lambda: value("chat_sockets_open") == start, what="sockets closed")


# --- Refused handshakes, by reason ----------------------------------------------------


async def refused_with(reason: str, user, slug: str, **kwargs) -> None:
    before = value("chat_handshakes_refused_total", reason=reason)
    accepted, _ = await open_socket(user, slug, **kwargs)
    assert not accepted
    # The reason of a signed-in user's refusal is read after the refusal went out.
    await eventually(
        lambda: value("chat_handshakes_refused_total", reason=reason) == before + 1,
        what=f"refusal counted as {reason}",
    )


async def test_refused_handshakes_are_counted_by_reason(room_factory, room, alice, bob):
    await refused_with("anonymous", None, room.slug)
    await refused_with("origin", alice, room.slug, origin=b"http://evil.example")
    await refused_with("path", alice, "caf\u00e9")
    await refused_with("not_found", alice, "no-such-room")
    private = await database_sync_to_async(room_factory)(
        "Secret", owner=alice, is_private=True, slug="secret"
    )
    await refused_with("forbidden", bob, private.slug)
    await database_sync_to_async(Membership.objects.create)(room=room, user=bob, is_banned=True)
    await refused_with("banned", bob, room.slug)


async def test_a_handshake_during_a_storage_outage_counts_as_unavailable(room, alice, monkeypatch):
    from django.db import OperationalError

    from chatrooms.access import connect_cache

    async def broken(*args, **kwargs):
        raise OperationalError("the database is down")

    monkeypatch.setattr(connect_cache, "read", broken)
    before = value("chat_handshakes_refused_total", reason="unavailable")
    accepted, sock = await open_socket(alice, room.slug)
    assert accepted  # then closed with 1013 (try again later)
    closed = await sock.communicator.receive_output(timeout=3)
    assert closed == {"type": "websocket.close", "code": protocol.CLOSE_TRY_AGAIN}
    assert value("chat_handshakes_refused_total", reason="unavailable") == before + 1


async def test_a_socket_over_the_users_cap_counts_as_too_many_sockets(
    layer, settings, room, alice, connect
):
    settings.CHAT_MAX_SOCKETS_PER_USER = 1
    await connect(alice, room)
    before = value("chat_handshakes_refused_total", reason="too_many_sockets")
    accepted, sock = await open_socket(alice, room.slug)
    assert accepted  # then told `closed` and closed with 4429
    await eventually(
        lambda: value("chat_handshakes_refused_total", reason="too_many_sockets") == before + 1
    )
    await sock.close()


def test_the_hook_for_other_refusals_counts_any_reason():
    before = value("chat_handshakes_refused_total", reason="too_many_sockets")
    metrics.socket_refused("too_many_sockets", room="general", user_id=3, code=4429)
    assert value("chat_handshakes_refused_total", reason="too_many_sockets") == before + 1
    before = value("chat_handshakes_refused_total", reason="something_new")
    metrics.handshake_refused("something_new")
    assert value("chat_handshakes_refused_total", reason="something_new") == before + 1


# --- Error frames, by code ---------------------------------------------------------------


async def test_error_frames_are_counted_by_code(layer, room, alice, connect):
    codes = ("bad_json", "unknown_type", "not_found")
    delta = Delta(*(("chat_error_frames_total", {"code": code}) for code in codes))
    a, _ = await connect(alice, room)
    await a.send("{not json")
    assert (await a.recv_type("error"))["code"] == "bad_json"
    await a.send({"type": "nope"})
    assert (await a.recv_type("error"))["code"] == "unknown_type"
    await a.send({"type": "chat.delete", "id": 999999})
    assert (await a.recv_type("error"))["code"] == "not_found"
    assert [delta("chat_error_frames_total", code=code) for code in codes] == [1, 1, 1]


# --- The outbox and the Redis link ----------------------------------------------------------


async def test_a_slow_reader_closed_by_its_outbox_is_counted():
    before = value("chat_outbox_closed_total", reason="too_slow")
    stuck = FakeSocket(stuck=True)
    box = Outbox(stuck.send, room_id=1)
    box.release("hello", 0)
    try:
        for n in range(OUTBOX_LIMIT + 1):
            box.put(f"frame {n}")
        assert box.closed
        assert value("chat_outbox_closed_total", reason="too_slow") == before + 1
    finally:
        box.stop()


@pytest.mark.redis
async def test_a_lost_redis_link_counts_resyncs_and_the_reconnect(settings, own_redis):  # noqa: F811
    settings.REDIS_URL = own_redis.url
    hub = Hub()
    delta = Delta(
        ("chat_redis_reconnects_total", {}),
        ("chat_outbox_closed_total", {"reason": "resync"}),
    )
    try:
        socket = FakeSocket()
        box = Outbox(socket.send, 1)
        await hub.join(1, "a", box)
        box.release("hello", 0)
        assert hub.link_state == "up"
        assert delta("chat_redis_reconnects_total") == 0  # the first link is no reconnect
        own_redis.kill()
        await eventually(lambda: hub.link_state == "down", timeout=10)
        assert delta("chat_outbox_closed_total", reason="resync") == 1
        own_redis.start()
        await eventually(lambda: hub.link_state == "up", timeout=10)
        assert delta("chat_redis_reconnects_total") == 1
    finally:
        await hub.close()


# --- chat.socket lines ------------------------------------------------------------------------


def socket_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "chat.socket"]


async def test_socket_lines_carry_the_event_and_its_fields(room, alice, bob, caplog, connect):
    caplog.set_level(logging.DEBUG, logger="chat.socket")
    a, _ = await connect(alice, room)
    opened = [r for r in socket_records(caplog) if r.event == "open"]
    assert len(opened) == 1
    assert opened[0].user_id == alice.id
    assert opened[0].room == room.slug
    socket_id = opened[0].socket_id
    assert socket_id.startswith(PROCESS_TAG + ".")
    assert opened[0].levelno == logging.DEBUG

    accepted, _ = await open_socket(bob, room.slug, origin=b"http://evil.example")
    assert not accepted
    refused = [r for r in socket_records(caplog) if r.event == "refused"]
    assert [(r.reason, r.levelno) for r in refused] == [("origin", logging.INFO)]
    assert "evil.example" in refused[0].getMessage()

    await a.close()
    await eventually(lambda: any(r.event == "close" for r in socket_records(caplog)))
    (closed,) = [r for r in socket_records(caplog) if r.event == "close"]
    assert (closed.socket_id, closed.user_id, closed.room) == (socket_id, alice.id, room.slug)
    assert closed.code == 1000  # the test client's normal close


async def test_a_refusal_line_cannot_be_forged_by_its_origin_or_path(alice, room, caplog):
    caplog.set_level(logging.INFO, logger="chat.socket")
    forged = b"http://evil.example\n2026-01-01 00:00:00,000 INFO chat.socket socket x open"
    assert not (await open_socket(alice, room.slug, origin=forged))[0]
    assert not (await open_socket(alice, "a\nb"))[0]
    lines = [r.getMessage() for r in socket_records(caplog)]
    assert len(lines) == 2
    assert all("\n" not in line for line in lines), lines
    assert "\\n" in lines[0]  # shown escaped, as repr writes it


async def test_a_failing_frame_handler_logs_its_socket(room, alice, caplog, connect, monkeypatch):
    from chatrooms.consumers import ChatConsumer

    async def broken(self, event):
        raise RuntimeError("a bug")

    monkeypatch.setattr(ChatConsumer, "on_history", broken)
    caplog.set_level(logging.DEBUG, logger="chat.socket")
    before = value("chat_error_frames_total", code="server_error")
    a, _ = await connect(alice, room)
    (opened,) = [r for r in socket_records(caplog) if r.event == "open"]
    await a.send({"type": "history"})
    assert (await a.recv_type("error"))["code"] == "server_error"
    (error,) = [r for r in socket_records(caplog) if r.event == "error"]
    assert error.levelno == logging.ERROR
    assert error.exc_info is not None and "a bug" in str(error.exc_info[1])
    assert (error.socket_id, error.user_id, error.room) == (opened.socket_id, alice.id, room.slug)
    assert value("chat_error_frames_total", code="server_error") == before + 1


async def test_an_exception_escaping_the_consumer_is_tied_to_its_socket(
    room, alice, caplog, connect, monkeypatch
):
    from chatrooms.consumers import ChatConsumer

    async def broken(self, message):
        raise RuntimeError("escaped")

    monkeypatch.setattr(ChatConsumer, "websocket_receive", broken)
    caplog.set_level(logging.DEBUG, logger="chat.socket")
    a, _ = await connect(alice, room)
    (opened,) = [r for r in socket_records(caplog) if r.event == "open"]
    await a.send({"type": "ping"})
    with pytest.raises(RuntimeError, match="escaped"):  # the server's to log, with its traceback
        await a.communicator.wait(timeout=3)
    (error,) = [r for r in socket_records(caplog) if r.event == "error"]
    assert (error.socket_id, error.room) == (opened.socket_id, room.slug)
    assert opened.socket_id in error.getMessage()


def test_socket_lines_are_plain_json_values():
    """Every extra field is a string or a number: a JSON line needs no custom encoder."""
    fields = metrics.socket_fields(
        "refused", reason="too_many_sockets", room="general", user_id=3, code=4429
    )
    assert json.loads(json.dumps(fields)) == {
        "event": "refused",
        "reason": "too_many_sockets",
        "room": "general",
        "user_id": 3,
        "code": 4429,
    }
    assert metrics.socket_fields("open", socket_id="", user_id=None) == {"event": "open"}


def test_secret_paths_are_blanked_in_any_record():
    record = logging.LogRecord(
        "django.request", logging.WARNING, __file__, 1, "Forbidden: %s",
        ("/chats/invite/Abc123_-xyz/",), None,
    )  # fmt: skip

    class Request:
        method = "GET"
        path = "/accounts/password/reset/key/3-abc-def/"

    record.request = Request()
    assert metrics.RedactSecrets().filter(record) is True
    assert record.getMessage() == "Forbidden: /chats/invite/[redacted]/"
    assert record.request == "GET /accounts/password/reset/key/[redacted]/"
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "room %s", ("general",), None)
    metrics.RedactSecrets().filter(plain)
    assert plain.getMessage() == "room general"
