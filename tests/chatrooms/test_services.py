"""Services: stored state, emitted events and query counts."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from chatrooms import protocol, services
from chatrooms.hub import hub
from chatrooms.models import Membership, Message, Room
from chatrooms.services.rooms import RoomNameTaken

pytestmark = pytest.mark.django_db


class Recorder:
    """Stands where a socket's outbox stands in the hub."""

    def __init__(self):
        self.frames = []

    def put(self, text, message_id=0):
        self.frames.append(protocol.decode_json(text))

    def stop(self):
        pass


@pytest.fixture
def listener(settings):
    """What the sockets of a room would get, through the in-process hub."""
    settings.REDIS_URL = ""
    joined = []

    def listen(room_id):
        recorder = Recorder()
        hub.rooms.setdefault(room_id, {})[f"test-{id(recorder)}"] = recorder
        joined.append((room_id, f"test-{id(recorder)}"))
        return recorder

    yield listen
    for room_id, conn_id in joined:
        hub.rooms.get(room_id, {}).pop(conn_id, None)
        if not hub.rooms.get(room_id, True):
            del hub.rooms[room_id]


@pytest.mark.django_db(transaction=True)
def test_message_create_stores_and_answers_the_frame(room, alice):
    # Sockets store through chatrooms/writer.py (tests/chatrooms/test_writer.py).
    frame, created = services.message_create(
        room_id=room.id, user=alice, body="hi", client_id="c-1"
    )
    assert created
    assert frame["user"] == "alice" and frame["display_name"] == "Alice Liddell"
    assert Message.objects.get(id=frame["id"]).body == "hi"


def test_message_create_repeat_returns_the_stored_one(room, alice):
    first, _ = services.message_create(room_id=room.id, user=alice, body="hi", client_id="c-1")
    again, created = services.message_create(
        room_id=room.id, user=alice, body="hi (retry)", client_id="c-1"
    )
    assert not created
    assert again["id"] == first["id"] and again["message"] == "hi"
    assert Message.objects.count() == 1


def test_message_create_repeat_of_a_deleted_message_stays_deleted(room, alice):
    first, _ = services.message_create(room_id=room.id, user=alice, body="hi", client_id="c-1")
    services.message_delete(room_id=room.id, message_id=first["id"], user=alice)
    again, created = services.message_create(
        room_id=room.id, user=alice, body="hi", client_id="c-1"
    )
    assert not created and again == {"type": "chat.delete", "id": first["id"]}


def test_message_create_without_client_id_never_dedupes(room, alice):
    services.message_create(room_id=room.id, user=alice, body="same")
    services.message_create(room_id=room.id, user=alice, body="same")
    assert Message.objects.count() == 2


def test_database_refuses_a_duplicate_client_id(room, alice):
    Message.objects.create(room=room, author=alice, body="a", client_id="x")
    with pytest.raises(IntegrityError):
        Message.objects.create(room=room, author=alice, body="b", client_id="x")


def test_edit_broadcasts_after_commit(room, alice, listener, django_capture_on_commit_callbacks):
    socket = listener(room.id)
    message = Message.objects.create(room=room, author=alice, body="helo")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        frame = services.message_edit(
            room_id=room.id, message_id=message.id, user=alice, body="hello"
        )
    assert socket.frames == []  # nothing before the commit
    callbacks[0]()
    assert socket.frames == [frame]
    message.refresh_from_db()
    assert message.body == "hello" and message.edited_at is not None


@pytest.mark.django_db(transaction=True)
def test_nothing_reaches_sockets_from_a_transaction_that_rolls_back(room, alice, listener):
    """Writes notify after commit: a service that published at once would fail this."""
    socket = listener(room.id)
    message = Message.objects.create(room=room, author=alice, body="x")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.message_edit(room_id=room.id, message_id=message.id, user=alice, body="y")
        services.message_create(room_id=room.id, user=alice, body="new")
        services.room_update(user=alice, room=room, name="Renamed", topic="t")
        raise RuntimeError("the caller's transaction fails after the services ran")
    assert socket.frames == []
    message.refresh_from_db()
    assert message.body == "x" and Message.objects.count() == 1
    frame, _ = services.message_create(room_id=room.id, user=alice, body="kept")
    assert socket.frames == [frame]  # committed: it does reach them


@pytest.mark.django_db(transaction=True)
def test_message_create_broadcasts_and_a_repeat_broadcasts_the_stored_one_again(
    room, alice, listener
):
    socket = listener(room.id)
    frame, created = services.message_create(room_id=room.id, user=alice, body="hi", client_id="a")
    again, created_again = services.message_create(
        room_id=room.id, user=alice, body="hi (retry)", client_id="a"
    )
    assert created and not created_again and again == frame
    assert socket.frames == [frame, frame]  # at least once; clients drop the repeat by id
    assert Message.objects.count() == 1


def test_room_update_reaches_open_pages_after_commit(
    room, alice, listener, django_capture_on_commit_callbacks
):
    socket = listener(room.id)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.room_update(user=alice, room=room, name="Ops", topic="Deploys only")
    assert socket.frames == []
    for callback in callbacks:
        callback()
    assert socket.frames == [
        {
            "type": "room",
            "room": {
                "slug": "general",
                "name": "Ops",
                "topic": "Deploys only",
                "is_private": False,
            },
        }
    ]


def test_moderator_deletes_others_messages_member_cannot(room, alice, bob, user_factory):
    carol = user_factory(username="carol")
    Membership.objects.create(room=room, user=bob, role="moderator")
    Membership.objects.create(room=room, user=carol)
    message = Message.objects.create(room=room, author=alice, body="x")
    with pytest.raises(services.ServiceError) as exc:
        services.message_delete(room_id=room.id, message_id=message.id, user=carol)
    assert exc.value.code == "forbidden"
    services.message_delete(room_id=room.id, message_id=message.id, user=bob)
    message.refresh_from_db()
    assert message.deleted_at is not None
    with pytest.raises(services.ServiceError) as exc:  # gone now
        services.message_delete(room_id=room.id, message_id=message.id, user=bob)
    assert exc.value.code == "not_found"


def test_room_create_makes_owner_and_unique_slugs(alice):
    first = services.room_create(user=alice, name="Design Team", topic="pixels")
    second = services.room_create(user=alice, name="Design team!")
    assert first.slug == "design-team" and second.slug == "design-team-2"
    assert Membership.objects.get(room=first, user=alice).role == "owner"


def test_room_create_avoids_reserved_and_empty_slugs(alice):
    assert services.room_create(user=alice, name="New").slug == "new-room"
    assert services.room_create(user=alice, name="日本語").slug == "room"


def test_enter_by_name_creates_public_room_or_joins_existing(alice, bob):
    room = services.room_get_or_create_by_name(user=alice, name="Lobby Talk")
    assert room.slug == "lobby-talk" and not room.is_private
    assert services.room_get_or_create_by_name(user=bob, name="lobby talk") == room
    assert Membership.objects.get(room=room, user=bob).role == "member"


def test_enter_by_name_refuses_private_rooms_of_others(room_factory, alice, bob):
    room_factory("Secret", owner=alice, is_private=True, slug="secret")
    assert services.room_get_or_create_by_name(user=bob, name="Secret") is None
    assert not Membership.objects.filter(user=bob).exists()
    assert Room.objects.filter(slug="secret").count() == 1


def test_room_enter_rules(room_factory, alice, bob):
    public = room_factory("Pub", owner=alice, slug="pub")
    room_factory("Priv", owner=alice, slug="priv", is_private=True)
    assert services.room_enter(user=bob, slug="pub").role == "member"
    assert services.room_enter(user=bob, slug="priv") is None
    assert services.room_enter(user=bob, slug="nope") is None
    Membership.objects.filter(room=public, user=bob).update(is_banned=True)
    assert services.room_enter(user=bob, slug="pub") is None
    assert services.room_enter(user=alice, slug="priv").role == "owner"


# --- No second room of the same name ------------------------------------------------


@pytest.mark.parametrize(
    "same",
    ["General", "general", "  GENERAL  ", "Ｇｅｎｅｒａｌ", "ＧＥＮＥＲＡＬ\u3000"],
)
def test_room_create_refuses_the_name_of_a_public_room(room_factory, alice, bob, same):
    general = room_factory("General", owner=bob, slug="general")
    with pytest.raises(RoomNameTaken) as refused:
        services.room_create(user=alice, name=same)
    assert refused.value.room == general and refused.value.can_open
    assert refused.value.code == "forbidden"
    assert "A room named General already exists" in refused.value.detail
    assert Room.objects.count() == 1


def test_room_create_refuses_the_name_of_my_private_room(room_factory, alice, bob):
    mine = room_factory("Leads", owner=bob, members=[alice], slug="leads", is_private=True)
    with pytest.raises(RoomNameTaken) as refused:
        services.room_create(user=alice, name="leads", is_private=True)
    assert refused.value.room == mine


def test_room_create_refuses_a_public_name_even_when_banned_there(room_factory, alice, bob):
    room = room_factory("General", owner=bob, slug="general")
    Membership.objects.create(room=room, user=alice, is_banned=True)
    with pytest.raises(RoomNameTaken) as refused:
        services.room_create(user=alice, name="General")
    assert not refused.value.can_open  # no link to a room that would 404


def test_room_create_allows_names_of_rooms_one_cannot_see(room_factory, alice, bob):
    # A refusal would tell alice that bob's private room exists.
    room_factory("Leads", owner=bob, slug="leads", is_private=True)
    banned = room_factory("Board", owner=bob, slug="board", is_private=True)
    Membership.objects.create(room=banned, user=alice, is_banned=True)
    # An archived room is out of the lists; its name is free again.
    room_factory("Old", owner=alice, slug="old", archived_at=timezone.now())
    assert services.room_create(user=alice, name="Leads").slug == "leads-2"
    assert services.room_create(user=alice, name="Board").slug == "board-2"
    assert services.room_create(user=alice, name="Old").slug == "old-2"


def test_room_create_refusal_spends_no_creation(room_factory, settings, alice, bob):
    settings.CHAT_ROOM_CREATE_RATE = (1, 3600.0)
    room_factory("General", owner=bob, slug="general")
    for _ in range(3):
        with pytest.raises(RoomNameTaken):
            services.room_create(user=alice, name="General")
    assert services.room_create(user=alice, name="Other").name == "Other"


def test_enter_by_name_opens_the_room_of_the_same_name_at_another_address(room_factory, alice, bob):
    # "Straße" slugs to "strae", "STRASSE" to "strasse": the same name all the same.
    room = room_factory("Straße", owner=bob, slug="strae")
    assert services.room_get_or_create_by_name(user=alice, name="STRASSE") == room
    assert Room.objects.count() == 1
    assert Membership.objects.get(room=room, user=alice).role == "member"
