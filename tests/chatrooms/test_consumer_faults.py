"""No exception in any handler skips cleanup: each handler is made to raise in
turn, and the socket still answers (or closes with a code that says why), and
once it ends its user leaves the room, the hub and presence, seen by the
others as a `leave`. Storage or Redis down is `unavailable` / 1013; a bug is
`server_error` / 1011 (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.db.utils import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from chatrooms import access, consumers, protocol, selectors, services
from chatrooms.hub import hub
from chatrooms.models import Message
from chatrooms.presence import tracker
from chatrooms.writer import Writer
from tests.chatrooms.conftest import open_socket

pytestmark = [pytest.mark.django_db(transaction=True)]


class Boom(Exception):
    """A bug in a handler."""


def boom(*args, **kwargs):
    raise Boom("a bug")


async def aboom(*args, **kwargs):
    raise Boom("a bug")


async def no_trace_of(username: str, room) -> None:
    """The user's sockets left the hub and presence (and Redis, when configured)."""
    for _ in range(50):
        if username not in await tracker.store.online(room.id):
            break
        await asyncio.sleep(0.05)
    assert username not in await tracker.store.online(room.id)
    assert all(conn.username != username for conn in tracker.conns.values())
    local = hub.rooms.get(room.id, {})
    assert len(local) == sum(1 for conn in tracker.conns.values() if conn.room_id == room.id)


async def leave_seen_by(observer, username: str) -> None:
    while True:
        frame = await observer.recv(timeout=5)
        if frame["type"] == "presence" and frame["user"] == username:
            assert frame["status"] == "leave"
            assert username not in frame["online"]
            return


# --- Frame handlers: the socket stays open and says what failed ---------------------

FRAME_FAULTS = [
    ("_store", Writer, {"type": "chat.message", "message": "hi", "client_id": "c1"}),
    ("message_edit", services, {"type": "chat.edit", "id": 1, "message": "x"}),
    ("message_delete", services, {"type": "chat.delete", "id": 1}),
    ("message_history", selectors, {"type": "history", "before": 5}),
    ("membership_mark_read", services, {"type": "read", "id": 1}),
    ("typing_frame", protocol, {"type": "typing", "active": True}),
]


@pytest.mark.parametrize(
    ("name", "module", "frame"), FRAME_FAULTS, ids=[f[0].strip("_") for f in FRAME_FAULTS]
)
async def test_a_handler_that_raises_answers_server_error_and_the_socket_lives_on(
    layer, room, alice, bob, connect, monkeypatch, name, module, frame
):
    watcher, _ = await connect(bob, room)
    sock, _ = await connect(alice, room)
    await watcher.recv_type("presence")
    monkeypatch.setattr(module, name, boom)
    await sock.send(frame)
    error = await sock.recv_type("error")
    assert error["code"] == "server_error"
    if "client_id" in frame:
        assert error["client_id"] == frame["client_id"]
    await sock.send({"type": "ping"})
    assert (await sock.recv_type("pong")) == {"type": "pong"}  # still open, still served
    await sock.close()
    await leave_seen_by(watcher, "alice")
    await no_trace_of("alice", room)


async def test_storage_down_answers_unavailable_and_a_resend_is_stored_once(
    layer, room, alice, connect, monkeypatch
):
    sock, _ = await connect(alice, room)
    real = Writer._store

    async def down(self, batch):
        raise OperationalError("connection refused")

    monkeypatch.setattr(Writer, "_store", down)
    await sock.send({"type": "chat.message", "message": "keep me", "client_id": "k1"})
    error = await sock.recv_type("error")
    assert (error["code"], error["client_id"]) == ("unavailable", "k1")
    monkeypatch.setattr(Writer, "_store", real)
    for _ in range(2):  # the page resends; a second resend stores nothing more
        await sock.send({"type": "chat.message", "message": "keep me", "client_id": "k1"})
        echo = await sock.recv_type("chat.message")
        assert (echo["message"], echo["client_id"]) == ("keep me", "k1")
    count = await Message.objects.filter(client_id="k1").acount()
    assert count == 1


# --- The handshake: refused with a code that says whether to come back -----------------

CONNECT_FAULTS = [
    ("connect_reads", access, boom, protocol.CLOSE_SERVER_ERROR),
    ("connect_reads", access, OperationalError, protocol.CLOSE_TRY_AGAIN),
    ("message_history", selectors, boom, protocol.CLOSE_SERVER_ERROR),
    ("message_history", selectors, OperationalError, protocol.CLOSE_TRY_AGAIN),
    ("join", hub, aboom, protocol.CLOSE_SERVER_ERROR),
    ("join_user", hub, aboom, protocol.CLOSE_SERVER_ERROR),
    ("join_listing", tracker, RedisConnectionError, protocol.CLOSE_TRY_AGAIN),
    ("join_listing", tracker, aboom, protocol.CLOSE_SERVER_ERROR),
]


def _raiser(fault):
    if fault in (boom, aboom):
        return fault
    if fault is RedisConnectionError:

        async def redis_down(*args, **kwargs):
            raise RedisConnectionError("Connection refused")

        return redis_down

    def db_down(*args, **kwargs):
        raise OperationalError("connection refused")

    return db_down


@pytest.mark.parametrize(
    ("name", "owner", "fault", "code"),
    CONNECT_FAULTS,
    ids=[f"{f[0]}-{getattr(f[2], '__name__', f[2])}" for f in CONNECT_FAULTS],
)
async def test_a_handshake_that_raises_closes_with_a_code_and_leaves_nothing(
    layer, room, alice, bob, connect, monkeypatch, name, owner, fault, code
):
    watcher, _ = await connect(bob, room)
    hub.recent.pop(room.id, None)  # bob's hello filled the room's history: read it again
    monkeypatch.setattr(owner, name, _raiser(fault))
    accepted, sock = await open_socket(alice, room.slug)
    assert accepted  # accepted, then closed with a code the client acts on
    output = await sock.communicator.receive_output(timeout=5)
    while output["type"] == "websocket.send":  # hello may be out before the failure
        output = await sock.communicator.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": code}
    monkeypatch.undo()
    await no_trace_of("alice", room)
    assert "alice" not in hub.users.get(alice.id, {}) or not hub.users.get(alice.id)
    # Nothing of alice's failed socket stays: bob hears no join that never ends.
    await watcher.send({"type": "ping"})
    frame = await watcher.recv()
    while frame["type"] == "presence":
        assert frame["user"] == "alice"
        frame = await watcher.recv()
    assert frame == {"type": "pong"}
    assert "alice" not in await tracker.store.online(room.id)


async def test_presence_broadcast_failing_at_connect_does_not_refuse_the_socket(
    layer, room, alice, connect, monkeypatch
):
    monkeypatch.setattr(consumers, "broadcast_presence", _raiser(RedisConnectionError))
    sock, hello = await connect(alice, room)
    assert hello["type"] == "hello"
    await sock.send({"type": "ping"})
    assert (await sock.recv_type("pong")) == {"type": "pong"}


# --- Cleanup itself failing, and exceptions that escape the consumer -------------------


async def test_cleanup_with_redis_failing_still_forgets_the_socket_here(
    layer, room, alice, bob, connect, monkeypatch
):
    sock, _ = await connect(alice, room)
    monkeypatch.setattr(tracker.store, "leave", _raiser(RedisConnectionError))
    await sock.close()
    await asyncio.sleep(0.2)
    # This process forgets the socket at once (no refresh keeps it alive);
    # what Redis holds expires within CHAT_PRESENCE_TIMEOUT.
    assert all(conn.username != "alice" for conn in tracker.conns.values())
    assert room.id not in hub.rooms
    assert alice.id not in hub.users


async def test_an_exception_escaping_the_consumer_still_cleans_up(
    layer, room, alice, bob, connect, monkeypatch
):
    watcher, _ = await connect(bob, room)
    sock, _ = await connect(alice, room)
    await watcher.recv_type("presence")

    async def broken_receive(self, text_data=None, bytes_data=None):
        raise Boom("escapes every guard")

    monkeypatch.setattr(consumers.ChatConsumer, "receive", broken_receive)
    await sock.communicator.send_input({"type": "websocket.receive", "text": json.dumps({})})
    with pytest.raises(Boom):
        await sock.communicator.wait(timeout=5)
    await leave_seen_by(watcher, "alice")
    await no_trace_of("alice", room)


async def test_a_read_marker_lost_to_an_outage_gets_no_reply(
    layer, room, alice, connect, monkeypatch
):
    sock, _ = await connect(alice, room)

    def down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(services, "membership_mark_read", down)
    await sock.send({"type": "read", "id": 1})  # `read` never gets a reply, even now
    await sock.send({"type": "ping"})
    assert (await sock.recv()) == {"type": "pong"}
