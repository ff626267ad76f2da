"""The admin goes through the services: each change it can make has the same
live effect on open sockets as the settings page, and every field it could
write behind the services' back is read-only. One test per field."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse

from chatrooms.models import Invite, Membership, Message, Room

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def cast(transactional_db, user_factory, room_factory):
    owner = user_factory(username="olivia")
    bob = user_factory(username="bob")
    staff = user_factory(username="boss", is_staff=True, is_superuser=True)
    room = room_factory("Team", owner=owner, slug="team", topic="old topic")
    other = room_factory("Other", owner=owner, slug="other")
    Membership.objects.create(room=room, user=bob)
    Membership.objects.create(room=other, user=bob)
    return {"owner": owner, "bob": bob, "staff": staff, "room": room, "other": other}


async def as_staff(cast, method: str, url: str, data: dict | None = None):
    def call():
        client = Client()
        client.force_login(cast["staff"])
        return getattr(client, method)(url, data or {})

    return await database_sync_to_async(call)()


async def action(cast, model: str, name: str, ids: list[int]):
    url = reverse(f"admin:chatrooms_{model}_changelist")
    response = await as_staff(cast, "post", url, {"action": name, "_selected_action": ids})
    assert response.status_code == 302, response.content[:500]
    return response


async def closed(sock, reason: str) -> None:
    assert (await sock.recv_type("closed", timeout=5)) == {"type": "closed", "reason": reason}
    assert (await sock.communicator.receive_output(timeout=3)) == {
        "type": "websocket.close",
        "code": 4403,
    }


def change_form(room: Room, **fields) -> dict:
    data = {"name": room.name, "topic": room.topic}
    data.update(fields)
    # The membership inline's management form (nothing added or changed).
    data.update(
        {
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "0",
        }
    )
    return data


# --- Room ---------------------------------------------------------------------------


async def test_room_name_and_topic_reach_open_pages(layer, cast, connect):
    room = cast["room"]
    sock, _ = await connect(cast["bob"], room)
    url = reverse("admin:chatrooms_room_change", args=[room.id])
    response = await as_staff(cast, "post", url, change_form(room, name="Renamed", topic="new"))
    assert response.status_code == 302, response.content[:1000]
    frame = await sock.recv_type("room")
    assert frame["room"] == {"slug": "team", "name": "Renamed", "topic": "new", "is_private": False}
    await room.arefresh_from_db()
    assert (room.name, room.topic) == ("Renamed", "new")


@pytest.mark.parametrize(
    "field, value",
    [("slug", "moved"), ("is_private", "on"), ("archived_at_0", "2026-01-01"), ("created_by", "")],
)
async def test_room_fields_with_effects_are_read_only(layer, cast, connect, field, value):
    room = cast["room"]
    sock, _ = await connect(cast["bob"], room)
    url = reverse("admin:chatrooms_room_change", args=[room.id])
    response = await as_staff(cast, "post", url, change_form(room, **{field: value}))
    assert response.status_code == 302
    fresh = await Room.objects.aget(id=room.id)
    assert (fresh.slug, fresh.is_private, fresh.archived_at, fresh.created_by_id) == (
        "team",
        False,
        None,
        cast["owner"].id,
    )
    await sock.send({"type": "ping"})
    assert (await sock.recv_type("pong")) == {"type": "pong"}  # still open


async def test_room_archive_action_closes_open_pages_and_unarchive_reopens(layer, cast, connect):
    room = cast["room"]
    sock, _ = await connect(cast["bob"], room)
    await action(cast, "room", "archive", [room.id])
    await closed(sock, "archived")
    await room.arefresh_from_db()
    assert room.archived_at is not None
    await action(cast, "room", "unarchive", [room.id])
    await room.arefresh_from_db()
    assert room.archived_at is None
    again, hello = await connect(cast["bob"], room)
    assert hello["type"] == "hello"


async def test_rooms_are_neither_added_nor_deleted_here(cast):
    add = await as_staff(cast, "get", reverse("admin:chatrooms_room_add"))
    delete = await as_staff(
        cast, "get", reverse("admin:chatrooms_room_delete", args=[cast["room"].id])
    )
    assert add.status_code == 403 and delete.status_code == 403


# --- Membership -------------------------------------------------------------------------


async def test_membership_ban_and_unban_actions(layer, cast, connect):
    bob, room = cast["bob"], cast["room"]
    sock, _ = await connect(bob, room)
    elsewhere, _ = await connect(bob, cast["other"])
    membership = await Membership.objects.aget(room=room, user=bob)
    await action(cast, "membership", "ban", [membership.id])
    await closed(sock, "banned")
    await elsewhere.send({"type": "ping"})
    assert (await elsewhere.recv_type("pong")) == {"type": "pong"}  # that room only
    assert (await Membership.objects.aget(id=membership.id)).is_banned
    await action(cast, "membership", "unban", [membership.id])
    assert not await Membership.objects.filter(room=room, user=bob, is_banned=True).aexists()


async def test_membership_role_actions(cast):
    membership = await Membership.objects.aget(room=cast["room"], user=cast["bob"])
    await action(cast, "membership", "make_moderator", [membership.id])
    assert (await Membership.objects.aget(id=membership.id)).role == "moderator"
    await action(cast, "membership", "make_member", [membership.id])
    assert (await Membership.objects.aget(id=membership.id)).role == "member"


async def test_the_owner_cannot_be_banned_from_the_admin(cast):
    owner = await Membership.objects.aget(room=cast["room"], user=cast["owner"])
    await action(cast, "membership", "ban", [owner.id])
    owner = await Membership.objects.aget(id=owner.id)
    assert not owner.is_banned and owner.role == "owner"


async def test_deleting_a_membership_is_a_kick(layer, cast, connect):
    bob, room = cast["bob"], cast["room"]
    sock, _ = await connect(bob, room)
    membership = await Membership.objects.aget(room=room, user=bob)
    url = reverse("admin:chatrooms_membership_delete", args=[membership.id])
    response = await as_staff(cast, "post", url, {"post": "yes"})
    assert response.status_code == 302
    await closed(sock, "kicked")
    assert not await Membership.objects.filter(id=membership.id).aexists()


@pytest.mark.parametrize(
    "field, value", [("role", "owner"), ("is_banned", "on"), ("last_read_id", "99")]
)
async def test_membership_fields_are_read_only(cast, field, value):
    membership = await Membership.objects.aget(room=cast["room"], user=cast["bob"])
    url = reverse("admin:chatrooms_membership_change", args=[membership.id])
    await as_staff(cast, "post", url, {field: value})
    fresh = await Membership.objects.aget(id=membership.id)
    assert (fresh.role, fresh.is_banned, fresh.last_read_id) == ("member", False, 0)


# --- Message --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value", [("body", "rewritten"), ("deleted_at_0", "2026-01-01"), ("client_id", "x")]
)
async def test_message_fields_are_read_only(cast, field, value):
    message = await Message.objects.acreate(room=cast["room"], author=cast["bob"], body="said")
    url = reverse("admin:chatrooms_message_change", args=[message.id])
    await as_staff(cast, "post", url, {field: value})
    fresh = await Message.objects.aget(id=message.id)
    assert (fresh.body, fresh.deleted_at, fresh.client_id) == ("said", None, "")


async def test_messages_are_deleted_for_everyone_not_from_the_table(layer, cast, connect):
    message = await Message.objects.acreate(room=cast["room"], author=cast["bob"], body="rude")
    sock, _ = await connect(cast["owner"], cast["room"])
    delete = await as_staff(
        cast, "get", reverse("admin:chatrooms_message_delete", args=[message.id])
    )
    assert delete.status_code == 403  # a hard delete would skip the live effect
    await action(cast, "message", "soft_delete", [message.id])
    assert (await sock.recv_type("chat.delete")) == {"type": "chat.delete", "id": message.id}


# --- Invite ---------------------------------------------------------------------------


async def test_invites_are_revoked_by_action_and_fields_are_read_only(cast):
    invite = await Invite.objects.acreate(room=cast["room"], token="tok-admin", max_uses=2)
    url = reverse("admin:chatrooms_invite_change", args=[invite.id])
    await as_staff(cast, "post", url, {"max_uses": "99", "expires_at_0": "2030-01-01"})
    fresh = await Invite.objects.aget(id=invite.id)
    assert (fresh.max_uses, fresh.expires_at) == (2, None)
    add = await as_staff(cast, "get", reverse("admin:chatrooms_invite_add"))
    assert add.status_code == 403
    await action(cast, "invite", "revoke", [invite.id])
    assert (await Invite.objects.aget(id=invite.id)).state == "revoked"
