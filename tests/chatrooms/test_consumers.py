"""The chat socket over the real ASGI stack, on the in-memory layer and on Redis."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from chatrooms.models import Membership, Message
from tests.chatrooms.conftest import open_socket

pytestmark = [pytest.mark.django_db(transaction=True)]


# --- Handshake -------------------------------------------------------------------


async def test_anonymous_is_refused(layer, room):
    accepted, _ = await open_socket(None, room.slug)
    assert not accepted


async def test_foreign_origin_is_refused(layer, room, alice):
    accepted, _ = await open_socket(alice, room.slug, origin=b"http://evil.example")
    assert not accepted


async def test_missing_origin_is_refused(layer, room, alice):
    accepted, _ = await open_socket(alice, room.slug, origin=None)
    assert not accepted


async def test_missing_room_is_refused(layer, alice):
    accepted, _ = await open_socket(alice, "no-such-room")
    assert not accepted


async def test_archived_room_is_refused(layer, room, alice):
    from django.utils import timezone

    room.archived_at = timezone.now()
    await database_sync_to_async(room.save)()
    accepted, _ = await open_socket(alice, room.slug)
    assert not accepted


async def test_private_room_needs_membership(layer, room_factory, alice, bob, connect):
    private = await database_sync_to_async(room_factory)(
        "Secret", owner=alice, is_private=True, slug="secret"
    )
    accepted, _ = await open_socket(bob, private.slug)
    assert not accepted
    assert not await database_sync_to_async(
        Membership.objects.filter(user=bob, room=private).exists
    )()
    _, hello = await connect(alice, private)
    assert hello["room"]["is_private"] is True


async def test_banned_member_is_refused(layer, room, bob):
    await database_sync_to_async(Membership.objects.create)(room=room, user=bob, is_banned=True)
    accepted, _ = await open_socket(bob, room.slug)
    assert not accepted


async def test_inactive_user_is_refused(layer, room, bob):
    cookie = await database_sync_to_async(_cookie)(bob)
    bob.is_active = False
    await database_sync_to_async(bob.save)()
    accepted, _ = await open_socket(bob, room.slug, cookie=cookie)
    assert not accepted


def _cookie(user):
    from tests.chatrooms.conftest import session_cookie

    return session_cookie(user)


async def test_public_room_joins_on_connect_and_says_hello(layer, room, alice, bob, connect):
    await database_sync_to_async(Message.objects.create)(room=room, author=alice, body="first")
    sock, hello = await connect(bob, room)
    assert hello["room"] == {
        "slug": "general",
        "name": "General",
        "topic": "Anything",
        "is_private": False,
    }
    assert hello["user"] == {"username": "bob", "display_name": "bob"}
    assert hello["online"] == ["bob"]
    assert [m["message"] for m in hello["messages"]] == ["first"]
    assert hello["messages"][0]["user"] == "alice"
    assert hello["messages"][0]["display_name"] == "Alice Liddell"
    assert hello["has_more"] is False
    assert hello["last_read"] == 0
    assert "truncated" not in hello
    membership = await database_sync_to_async(Membership.objects.get)(room=room, user=bob)
    assert membership.role == "member"


# --- Messages ------------------------------------------------------------------------


async def test_message_is_stored_before_broadcast_with_server_username(
    layer, room, alice, bob, connect
):
    a, _ = await connect(alice, room)
    b, _ = await connect(bob, room)
    await a.send(
        {"type": "chat.message", "message": "  hello bob  ", "user": "mallory", "client_id": "c1"}
    )
    frame = await b.recv_type("chat.message")
    # In the database by the time anyone hears of it.
    stored = await database_sync_to_async(Message.objects.get)(id=frame["id"])
    assert stored.body == "hello bob"
    assert stored.author_id == alice.id
    assert frame["user"] == "alice"  # never the client's "mallory"
    assert frame["display_name"] == "Alice Liddell"
    assert frame["message"] == "hello bob"
    assert frame["client_id"] == "c1"
    assert frame["ts"].endswith("Z")
    assert frame["edited_at"] is None
    assert (await a.recv_type("chat.message"))["id"] == frame["id"]  # the sender's echo


async def test_tutorial_frame_without_type_is_a_message(layer, room, alice, connect):
    a, _ = await connect(alice, room)
    await a.send({"message": "from the tutorial"})
    frame = await a.recv_type("chat.message")
    assert frame["message"] == "from the tutorial"
    assert frame["client_id"] == ""


async def test_same_client_id_is_stored_once_and_echoed_again(layer, room, alice, bob, connect):
    a, _ = await connect(alice, room)
    b, _ = await connect(bob, room)
    await a.send({"type": "chat.message", "message": "once", "client_id": "k-1"})
    first = await a.recv_type("chat.message")
    await b.recv_type("chat.message")
    await a.send({"type": "chat.message", "message": "once", "client_id": "k-1"})
    again = await a.recv_type("chat.message")
    assert again["id"] == first["id"]
    # The others get it again too: the first attempt's broadcast may never
    # have run (its reply lost with the database connection); clients drop
    # an id they already have.
    assert (await b.recv_type("chat.message"))["id"] == first["id"]
    count = await database_sync_to_async(Message.objects.filter(client_id="k-1").count)()
    assert count == 1


async def test_same_client_id_from_another_user_is_another_message(
    layer, room, alice, bob, connect
):
    a, _ = await connect(alice, room)
    b, _ = await connect(bob, room)
    await a.send({"type": "chat.message", "message": "mine", "client_id": "same"})
    await b.send({"type": "chat.message", "message": "mine too", "client_id": "same"})
    ids = {(await a.recv_type("chat.message"))["id"], (await a.recv_type("chat.message"))["id"]}
    assert len(ids) == 2


# --- Bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, code",
    [
        ("not json", "bad_json"),
        ("", "bad_json"),
        ("[1, 2]", "bad_frame"),
        ('"hello"', "bad_frame"),
        ('{"type": 5}', "bad_frame"),
        ('{"nothing": true}', "bad_frame"),
        ('{"type": "chat.message", "message": 42}', "bad_frame"),
        ('{"type": "chat.message", "message": "x", "client_id": 7}', "bad_frame"),
        ('{"type": "chat.message", "message": "x", "client_id": "' + "c" * 65 + '"}', "bad_frame"),
        ('{"type": "chat.message", "message": "nul\\u0000here"}', "bad_frame"),
        ('{"type": "chat.message", "message": "lone \\ud800 surrogate"}', "bad_frame"),
        ('{"type": "chat.message", "message": "   \\n\\t "}', "empty"),
        ('{"type": "chat.message", "message": ""}', "empty"),
        ('{"type": "chat.edit", "id": "7", "message": "x"}', "bad_frame"),
        ('{"type": "chat.edit", "id": true, "message": "x"}', "bad_frame"),
        ('{"type": "chat.delete", "id": -1}', "bad_frame"),
        ('{"type": "chat.delete", "id": 99999999999999999999999}', "bad_frame"),
        ('{"type": "typing", "active": "yes"}', "bad_frame"),
        ('{"type": "history", "before": 0}', "bad_frame"),
        ('{"type": "history", "limit": "all"}', "bad_frame"),
        ('{"type": "read"}', "bad_frame"),
        ('{"type": "shout", "message": "x"}', "unknown_type"),
    ],
)
async def test_bad_frames_get_an_error_and_store_nothing(layer, room, alice, connect, raw, code):
    a, _ = await connect(alice, room)
    await a.send(raw)
    error = await a.recv_type("error")
    assert error["code"] == code
    assert error["detail"]
    await a.send({"type": "ping"})  # the socket is still open and serving
    assert (await a.recv_type("pong")) == {"type": "pong"}
    assert not await database_sync_to_async(Message.objects.exists)()


async def test_too_long_message(layer, room, alice, connect, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 10
    a, _ = await connect(alice, room)
    await a.send({"type": "chat.message", "message": "x" * 11})
    assert (await a.recv_type("error"))["code"] == "too_long"
    await a.send({"type": "chat.message", "message": "x" * 10})
    assert (await a.recv_type("chat.message"))["message"] == "x" * 10
    assert await database_sync_to_async(Message.objects.count)() == 1


async def test_default_message_limit_is_4000_characters(layer, room, alice, connect):
    a, _ = await connect(alice, room)
    await a.send({"type": "chat.message", "message": "é" * 4001})
    assert (await a.recv_type("error"))["code"] == "too_long"
    await a.send({"type": "chat.message", "message": "é" * 4000})
    assert len((await a.recv_type("chat.message"))["message"]) == 4000


async def test_binary_frame_is_a_bad_frame(layer, room, alice, connect):
    a, _ = await connect(alice, room)
    await a.communicator.send_to(bytes_data=b"\x00\x01")
    assert (await a.recv_type("error"))["code"] == "bad_frame"
    await a.send({"type": "ping"})
    assert (await a.recv())["type"] == "pong"


async def test_frame_over_64_kib_closes_with_1009(layer, room, alice, connect):
    a, _ = await connect(alice, room)
    await a.send({"type": "chat.message", "message": "x" * (64 * 1024)})
    output = await a.communicator.receive_output(timeout=3)
    assert output == {"type": "websocket.close", "code": 1009}
    assert not await database_sync_to_async(Message.objects.exists)()


# --- Edit and delete --------------------------------------------------------------------


async def test_edit_own_message_is_broadcast(layer, room, alice, bob, connect):
    a, _ = await connect(alice, room)
    b, _ = await connect(bob, room)
    await a.send({"type": "chat.message", "message": "helo"})
    sent = await b.recv_type("chat.message")
    await a.send({"type": "chat.edit", "id": sent["id"], "message": "hello"})
    edit = await b.recv_type("chat.edit")
    assert edit["id"] == sent["id"] and edit["message"] == "hello" and edit["edited_at"]
    stored = await database_sync_to_async(Message.objects.get)(id=sent["id"])
    assert stored.body == "hello" and stored.edited_at is not None


async def test_delete_own_message_is_soft_and_broadcast(layer, room, alice, bob, connect):
    a, _ = await connect(alice, room)
    b, _ = await connect(bob, room)
    await a.send({"type": "chat.message", "message": "oops"})
    sent = await b.recv_type("chat.message")
    await a.send({"type": "chat.delete", "id": sent["id"]})
    assert (await b.recv_type("chat.delete")) == {"type": "chat.delete", "id": sent["id"]}
    stored = await database_sync_to_async(Message.objects.get)(id=sent["id"])
    assert stored.deleted_at is not None and stored.body == "oops"  # kept for audit
    # Gone from what clients get.
    _, hello = await (await _reconnect(bob, room))
    assert sent["id"] not in [m["id"] for m in hello["messages"]]


async def _reconnect(user, room, query=""):
    accepted, sock = await open_socket(user, room.slug, query=query)
    assert accepted

    async def hello():
        frame = await sock.recv_type("hello")
        await sock.close()
        return sock, frame

    return hello()


async def test_editing_or_deleting_someone_elses_message_is_forbidden(
    layer, room, alice, bob, connect
):
    a, _ = await connect(alice, room)
    b, _ = await connect(bob, room)
    await a.send({"type": "chat.message", "message": "alice's"})
    sent = await b.recv_type("chat.message")
    await b.send({"type": "chat.edit", "id": sent["id"], "message": "bob was here"})
    error = await b.recv_type("error")
    assert error["code"] == "forbidden" and error["id"] == sent["id"]
    await b.send({"type": "chat.delete", "id": sent["id"]})
    assert (await b.recv_type("error"))["code"] == "forbidden"
    stored = await database_sync_to_async(Message.objects.get)(id=sent["id"])
    assert stored.body == "alice's" and stored.deleted_at is None and stored.edited_at is None


async def test_room_owner_may_delete_any_message(layer, room, alice, bob, connect):
    a, _ = await connect(alice, room)
    b, _ = await connect(bob, room)
    await b.send({"type": "chat.message", "message": "spam"})
    sent = await a.recv_type("chat.message")
    await b.recv_type("chat.message")
    await a.send({"type": "chat.delete", "id": sent["id"]})
    assert (await b.recv_type("chat.delete"))["id"] == sent["id"]


async def test_edit_or_delete_of_unknown_or_foreign_room_message_is_not_found(
    layer, room, room_factory, alice, connect
):
    other = await database_sync_to_async(room_factory)("Other", owner=alice, slug="other")
    elsewhere = await database_sync_to_async(Message.objects.create)(
        room=other, author=alice, body="elsewhere"
    )
    a, _ = await connect(alice, room)
    for frame in (
        {"type": "chat.edit", "id": elsewhere.id, "message": "moved"},
        {"type": "chat.delete", "id": elsewhere.id},
        {"type": "chat.delete", "id": 987654},
    ):
        await a.send(frame)
        assert (await a.recv_type("error"))["code"] == "not_found"
    await elsewhere.arefresh_from_db()
    assert elsewhere.body == "elsewhere" and elsewhere.deleted_at is None


async def test_edit_validates_text(layer, room, alice, connect):
    a, _ = await connect(alice, room)
    await a.send({"type": "chat.message", "message": "text"})
    sent = await a.recv_type("chat.message")
    await a.send({"type": "chat.edit", "id": sent["id"], "message": "   "})
    error = await a.recv_type("error")
    assert error["code"] == "empty" and error["id"] == sent["id"]


# --- History, catch-up, read (the rules themselves: test_selectors.py) ----------------------


async def test_history_limit_is_capped_at_100(layer, room, alice, connect):
    await database_sync_to_async(Message.objects.bulk_create)(
        [Message(room=room, author=alice, body=f"m{n}") for n in range(120)]
    )
    a, _ = await connect(alice, room)
    await a.send({"type": "history", "limit": 1000})
    page = await a.recv_type("history")
    assert len(page["messages"]) == 100 and page["has_more"] is True


async def test_bad_after_is_a_fresh_connect(layer, room, alice, connect):
    await database_sync_to_async(Message.objects.create)(room=room, author=alice, body="x")
    for query in ("after=abc", "after=-5", "after=", "after=²"):
        sock, hello = await connect(alice, room, query=query)
        assert "truncated" not in hello and len(hello["messages"]) == 1
        await sock.close()


async def test_read_moves_forward_only_and_needs_a_message_of_the_room(
    layer, room, room_factory, alice, connect
):
    m1 = await database_sync_to_async(Message.objects.create)(room=room, author=alice, body="1")
    m2 = await database_sync_to_async(Message.objects.create)(room=room, author=alice, body="2")
    other = await database_sync_to_async(room_factory)("Other", owner=alice, slug="other")
    foreign = await database_sync_to_async(Message.objects.create)(
        room=other, author=alice, body="x"
    )
    a, hello = await connect(alice, room)
    assert hello["last_read"] == 0

    async def last_read():
        await a.send({"type": "ping"})  # frames are handled in order: read is done
        await a.recv_type("pong")
        membership = await database_sync_to_async(Membership.objects.get)(room=room, user=alice)
        return membership.last_read_id

    await a.send({"type": "read", "id": m2.id})
    assert await last_read() == m2.id
    await a.send({"type": "read", "id": m1.id})
    assert await last_read() == m2.id  # never back
    await a.send({"type": "read", "id": foreign.id + 1000})
    assert await last_read() == m2.id  # not a message of this room
    await a.send({"type": "read", "id": foreign.id})
    assert await last_read() == m2.id
    # read gets no reply: a socket's replies keep their order, so the frame
    # after the reads is the pong.
    await a.send({"type": "ping"})
    assert await a.recv() == {"type": "pong"}
    _, hello = await connect(alice, room)
    assert hello["last_read"] == m2.id


# --- Typing (presence: test_presence.py; rate limits: test_ratelimit.py) -----------------------


async def test_typing_reaches_others_but_not_the_sender(layer, room, alice, bob, connect):
    a, _ = await connect(alice, room)
    b, _ = await connect(bob, room)
    await a.recv_type("presence")
    await a.send({"type": "typing", "active": True})
    frame = await b.recv()
    assert frame == {
        "type": "typing",
        "user": "alice",
        "display_name": "Alice Liddell",
        "active": True,
    }
    # A room's frames arrive in the order they were published: had the
    # typing reached alice, it would come before her own message.
    await a.send({"type": "chat.message", "message": "done typing"})
    assert (await a.recv())["type"] == "chat.message"


# --- Redis specifics ------------------------------------------------------------------------------


@pytest.mark.redis
async def test_idle_socket_on_redis_survives_past_redis_timeouts(
    room, alice, bob, connect, settings, redis_url
):
    from tests.conftest import redis_layer_settings

    settings.CHANNEL_LAYERS = redis_layer_settings(redis_url)
    settings.REDIS_URL = redis_url
    a, _ = await connect(alice, room)
    b, _ = await connect(bob, room)
    # Letting time pass is the point: idle past redis-py's 5 s socket timeout.
    await asyncio.sleep(6.5)
    await a.send({"type": "chat.message", "message": "still here?"})
    assert (await b.recv_type("chat.message", timeout=5))["message"] == "still here?"
    await b.send({"type": "ping"})
    assert (await b.recv_type("pong"))["type"] == "pong"


async def test_hello_and_frames_are_json_text(layer, room, alice, connect):
    a, hello = await connect(alice, room)
    await a.send({"type": "chat.message", "message": '<img src=x onerror="alert(1)">'})
    raw = await a.communicator.receive_from(timeout=3)
    frame = json.loads(raw)
    assert frame["message"] == '<img src=x onerror="alert(1)">'  # escaping is the client's job


# --- Sign-out ----------------------------------------------------------------------------------


async def test_sign_out_closes_that_sessions_sockets_only(layer, room, alice, connect):
    from django.test import Client

    def signed_in_client():
        client = Client()
        client.force_login(alice)
        return client

    browser = await database_sync_to_async(signed_in_client)()
    phone = await database_sync_to_async(signed_in_client)()
    tab, _ = await connect(alice, room, cookie=browser.cookies["sessionid"].value)
    other_device, _ = await connect(alice, room, cookie=phone.cookies["sessionid"].value)
    response = await database_sync_to_async(browser.post)("/accounts/logout/")
    assert response.status_code == 302
    assert (await tab.recv_type("closed")) == {"type": "closed", "reason": "signed_out"}
    assert (await tab.communicator.receive_output(timeout=3)) == {
        "type": "websocket.close",
        "code": 4403,
    }
    await other_device.send({"type": "ping"})
    assert (await other_device.recv_type("pong"))["type"] == "pong"
