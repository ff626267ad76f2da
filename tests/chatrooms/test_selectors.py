"""chatrooms/selectors.py: the reads that encode a rule.

History pages, the catch-up of a reconnecting client (missed messages, then
the edits and deletes since, or the latest page when too much was missed),
the lobby's two lists, and the settings page's members and live invites.
The last section checks the history and catch-up rules as clients get them,
in hello and history frames.
"""

from __future__ import annotations

import datetime as dt

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chatrooms import selectors
from chatrooms.models import Invite, Membership, Message

pytestmark = pytest.mark.django_db


def say(room, author, *bodies: str) -> list[Message]:
    return [Message.objects.create(room=room, author=author, body=body) for body in bodies]


def texts(frames: list[dict]) -> list[tuple[str, str | None]]:
    return [(f["type"], f.get("message")) for f in frames]


# --- History -------------------------------------------------------------------------


def test_history_pages_back_to_the_first_message_oldest_first(room, alice):
    say(room, alice, *(f"m{n}" for n in range(7)))
    frames, has_more = selectors.message_history(room_id=room.id, before=None, limit=3)
    assert [f["message"] for f in frames] == ["m4", "m5", "m6"] and has_more
    frames, has_more = selectors.message_history(room_id=room.id, before=frames[0]["id"], limit=3)
    assert [f["message"] for f in frames] == ["m1", "m2", "m3"] and has_more
    frames, has_more = selectors.message_history(room_id=room.id, before=frames[0]["id"], limit=3)
    assert [f["message"] for f in frames] == ["m0"] and not has_more


def test_history_of_exactly_a_page_has_no_more(room, alice):
    say(room, alice, "one", "two")
    frames, has_more = selectors.message_history(room_id=room.id, before=None, limit=2)
    assert len(frames) == 2 and not has_more
    assert selectors.message_history(room_id=room.id, before=None, limit=5) == (frames, False)


def test_history_leaves_out_deleted_messages_and_other_rooms(room, room_factory, alice, bob):
    other = room_factory("Other", owner=bob, slug="other")
    first, gone, last = say(room, alice, "first", "gone", "last")
    say(other, bob, "elsewhere")
    Message.objects.filter(pk=gone.pk).update(deleted_at=timezone.now())
    frames, has_more = selectors.message_history(room_id=room.id, before=None, limit=10)
    assert [f["message"] for f in frames] == ["first", "last"] and not has_more
    # A deleted message does not count towards "more" either.
    frames, has_more = selectors.message_history(room_id=room.id, before=last.id, limit=1)
    assert [f["message"] for f in frames] == ["first"] and not has_more


def test_history_frames_carry_the_author_as_shown(room, alice, bob):
    say(room, alice, "from alice")
    say(room, bob, "from bob")
    gone = say(room, bob, "from a deleted account")[0]
    Message.objects.filter(pk=gone.pk).update(author=None)
    frames, _ = selectors.message_history(room_id=room.id, before=None, limit=10)
    assert [(f["user"], f["display_name"]) for f in frames] == [
        ("alice", "Alice Liddell"),
        ("bob", "bob"),
        ("[deleted user]", "[deleted user]"),
    ]
    assert frames[0]["edited_at"] is None and frames[0]["ts"].endswith("Z")


def test_message_history_query_count_is_constant(room, alice, django_assert_num_queries):
    Message.objects.bulk_create([Message(room=room, author=alice, body=str(n)) for n in range(60)])
    with django_assert_num_queries(1):
        frames, has_more = selectors.message_history(room_id=room.id, before=None, limit=50)
    assert len(frames) == 50 and has_more


# --- Catch-up ------------------------------------------------------------------------


def at(message: Message, **fields) -> None:
    Message.objects.filter(pk=message.pk).update(**fields)


def test_catch_up_is_the_missed_messages_then_the_changes_since_the_last_seen(room, alice, bob):
    now = timezone.now()
    earlier, edited, deleted, old_edit, seen = say(
        room, alice, "earlier", "edited", "deleted", "edited long ago", "last seen"
    )
    for n, message in enumerate((earlier, edited, deleted, old_edit, seen)):
        at(message, created_at=now - dt.timedelta(minutes=10 - n))
    at(old_edit, edited_at=now - dt.timedelta(minutes=8))  # before "last seen" was sent
    missed_1, missed_gone, missed_2 = say(room, bob, "missed 1", "missed and deleted", "missed 2")
    at(edited, body="edited (new)", edited_at=now)
    at(deleted, deleted_at=now)
    at(missed_gone, deleted_at=now)
    catch_up = selectors.message_catch_up(room_id=room.id, after=seen.id, limit=10, page=5)
    assert not catch_up.truncated
    assert texts(catch_up.messages) == [
        ("chat.message", "missed 1"),
        ("chat.message", "missed 2"),
        ("chat.edit", "edited (new)"),
        ("chat.delete", None),
    ]
    assert [f["id"] for f in catch_up.messages] == [missed_1.id, missed_2.id, edited.id, deleted.id]
    assert catch_up.messages[2]["edited_at"] is not None
    assert catch_up.has_more  # "earlier" and the rest are before the missed ones


def test_catch_up_with_nothing_missed_is_empty(room, alice):
    (seen,) = say(room, alice, "last seen")
    catch_up = selectors.message_catch_up(room_id=room.id, after=seen.id, limit=10, page=5)
    assert catch_up == selectors.CatchUp(messages=[], has_more=True, truncated=False)


def test_catch_up_from_before_the_first_message_is_everything(room, alice):
    say(room, alice, "one", "two")
    catch_up = selectors.message_catch_up(room_id=room.id, after=0, limit=10, page=5)
    assert texts(catch_up.messages) == [("chat.message", "one"), ("chat.message", "two")]
    assert not catch_up.has_more and not catch_up.truncated


def test_catch_up_past_the_limit_is_the_latest_page_truncated(room, alice):
    (seen,) = say(room, alice, "seen")
    say(room, alice, *(f"m{n}" for n in range(11)))
    catch_up = selectors.message_catch_up(room_id=room.id, after=seen.id, limit=10, page=4)
    assert catch_up.truncated and catch_up.has_more
    assert [f["message"] for f in catch_up.messages] == ["m7", "m8", "m9", "m10"]


def test_catch_up_at_the_limit_is_complete(room, alice):
    (seen,) = say(room, alice, "seen")
    say(room, alice, *(f"m{n}" for n in range(10)))
    catch_up = selectors.message_catch_up(room_id=room.id, after=seen.id, limit=10, page=4)
    assert not catch_up.truncated
    assert [f["message"] for f in catch_up.messages] == [f"m{n}" for n in range(10)]


def test_catch_up_changes_are_capped_at_the_limit_too(room, alice):
    now = timezone.now()
    old = say(room, alice, *(f"old {n}" for n in range(6)))
    (seen,) = say(room, alice, "seen")
    for message in old:
        at(message, created_at=now - dt.timedelta(minutes=5))
    at(seen, created_at=now - dt.timedelta(minutes=1))
    Message.objects.filter(pk__in=[m.pk for m in old]).update(edited_at=now, body="changed")
    catch_up = selectors.message_catch_up(room_id=room.id, after=seen.id, limit=4, page=2)
    assert [f["id"] for f in catch_up.messages] == [m.id for m in old[:4]]  # the oldest first
    assert not catch_up.truncated


# --- The lobby -----------------------------------------------------------------------


def test_lobby_unread_counts_ignore_own_and_deleted(room, alice, bob):
    Membership.objects.create(room=room, user=bob)
    seen = Message.objects.create(room=room, author=alice, body="seen")
    Membership.objects.filter(user=bob).update(last_read_id=seen.id)
    Message.objects.create(room=room, author=alice, body="new 1")
    Message.objects.create(room=room, author=alice, body="new 2")
    Message.objects.create(room=room, author=bob, body="mine")
    Message.objects.create(room=room, author=alice, body="gone", deleted_at=timezone.now())
    rooms = selectors.room_list_for_user(user_id=bob.id)
    assert [(r["room"].slug, r["unread"]) for r in rooms] == [("general", 2)]


def test_my_rooms_are_live_unbanned_ones_by_name(room_factory, alice, bob):
    room_factory("Zebra", owner=alice, members=[bob], slug="zebra")
    room_factory("Alpha", owner=bob, slug="alpha", is_private=True)
    room_factory("Archived", owner=bob, slug="archived", archived_at=timezone.now())
    banned = room_factory("Banned", owner=alice, slug="banned")
    Membership.objects.create(room=banned, user=bob, is_banned=True)
    room_factory("Not mine", owner=alice, slug="not-mine")
    rooms = selectors.room_list_for_user(user_id=bob.id)
    assert [(r["room"].slug, r["membership"].role, r["unread"]) for r in rooms] == [
        ("alpha", "owner", 0),
        ("zebra", "member", 0),
    ]


def test_public_rooms_to_join_are_live_public_rooms_i_am_not_in(room_factory, alice, bob):
    room_factory("Beta", owner=alice, slug="beta")
    room_factory("Alpha", owner=alice, slug="alpha")
    room_factory("Secret", owner=alice, slug="secret", is_private=True)
    room_factory("Old", owner=alice, slug="old", archived_at=timezone.now())
    room_factory("Joined", owner=alice, members=[bob], slug="joined")
    banned = room_factory("Banned", owner=alice, slug="banned")
    Membership.objects.create(room=banned, user=bob, is_banned=True)
    assert [r.slug for r in selectors.public_rooms_to_join(user_id=bob.id)] == ["alpha", "beta"]


# --- Rooms, members and invites ------------------------------------------------------


def test_room_lookups_by_slug(room, room_factory, alice, bob):
    old = room_factory("Old", owner=alice, slug="old", archived_at=timezone.now())
    assert selectors.room_for_slug("general") == room
    assert selectors.room_for_slug("old") is None  # archived: no page, no socket
    assert selectors.room_for_slug("missing") is None
    assert selectors.room_for_settings("old") == old  # its owner may unarchive it
    assert selectors.room_for_settings("missing") is None
    Membership.objects.create(room=room, user=bob, is_banned=True)
    assert selectors.membership_for(user_id=bob.id, room_id=room.id).is_banned
    assert selectors.membership_for(user_id=bob.id, room_id=old.id) is None


def test_members_owner_first_then_moderators_members_and_the_banned(room, alice, bob, user_factory):
    for name, fields in [
        ("zoe", {"role": "moderator"}),
        ("carol", {}),
        ("adam", {"is_banned": True}),
        ("mia", {"role": "moderator"}),
    ]:
        Membership.objects.create(room=room, user=user_factory(username=name), **fields)
    Membership.objects.create(room=room, user=bob)
    members = selectors.room_members(room_id=room.id)
    assert [m.user.username for m in members] == ["alice", "mia", "zoe", "bob", "carol", "adam"]


def test_live_invites_newest_first(room, alice):
    now = timezone.now()

    def invite(token, minutes_ago, **fields):
        made = Invite.objects.create(room=room, token=token, created_by=alice, **fields)
        Invite.objects.filter(pk=made.pk).update(created_at=now - dt.timedelta(minutes=minutes_ago))

    invite("older", 30)
    invite("newer", 10, max_uses=3, use_count=2)
    invite("revoked", 5, revoked_at=now)
    invite("expired", 20, expires_at=now - dt.timedelta(minutes=1))
    invite("used-up", 15, max_uses=2, use_count=2)
    live = selectors.invites_live(room_id=room.id)
    assert [i.token for i in live] == ["newer", "older"]
    assert live[0].created_by == alice


# --- As clients get them: hello and history frames ------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_hello_has_latest_page_and_history_pages_to_the_first(
    layer, room, alice, connect, settings
):
    settings.CHAT_HISTORY_PAGE = 10
    await database_sync_to_async(Message.objects.bulk_create)(
        [Message(room=room, author=alice, body=f"m{n}") for n in range(35)]
    )
    a, hello = await connect(alice, room)
    bodies = [m["message"] for m in hello["messages"]]
    assert bodies == [f"m{n}" for n in range(25, 35)]
    assert hello["has_more"] is True
    seen = bodies
    before = hello["messages"][0]["id"]
    while True:
        await a.send({"type": "history", "before": before, "limit": 10})
        page = await a.recv_type("history")
        seen = [m["message"] for m in page["messages"]] + seen
        if not page["has_more"]:
            break
        before = page["messages"][0]["id"]
    assert seen == [f"m{n}" for n in range(35)]


@pytest.mark.django_db(transaction=True)
async def test_catch_up_returns_exactly_the_missed_messages_and_changes(
    layer, room, alice, bob, connect
):
    b, _ = await connect(bob, room)
    a, _ = await connect(alice, room)
    sent = []
    for body in ("before 1", "before 2", "last seen"):
        await a.send({"type": "chat.message", "message": body})
        sent.append(await b.recv_type("chat.message"))
        await a.recv_type("chat.message")
    edited, deleted, last_seen = sent
    await b.close()
    # While bob is away:
    await a.send({"type": "chat.message", "message": "missed 1"})
    await a.send({"type": "chat.message", "message": "missed 2"})
    await a.send({"type": "chat.edit", "id": edited["id"], "message": "before 1 (edited)"})
    await a.send({"type": "chat.delete", "id": deleted["id"]})
    for kind in ("chat.message", "chat.message", "chat.edit", "chat.delete"):
        await a.recv_type(kind)
    _, hello = await connect(bob, room, query=f"after={last_seen['id']}")
    assert hello["truncated"] is False
    items = [(m["type"], m.get("message")) for m in hello["messages"]]
    assert items == [
        ("chat.message", "missed 1"),
        ("chat.message", "missed 2"),
        ("chat.edit", "before 1 (edited)"),
        ("chat.delete", None),
    ]
    assert hello["messages"][3]["id"] == deleted["id"]


@pytest.mark.django_db(transaction=True)
async def test_catch_up_past_the_limit_is_truncated_to_the_latest_page(
    layer, room, alice, connect, settings
):
    settings.CHAT_CATCHUP_LIMIT = 20
    settings.CHAT_HISTORY_PAGE = 5
    first = await database_sync_to_async(Message.objects.create)(
        room=room, author=alice, body="seen"
    )
    await database_sync_to_async(Message.objects.bulk_create)(
        [Message(room=room, author=alice, body=f"m{n}") for n in range(21)]
    )
    _, hello = await connect(alice, room, query=f"after={first.id}")
    assert hello["truncated"] is True
    assert [m["message"] for m in hello["messages"]] == [f"m{n}" for n in range(16, 21)]
    assert hello["has_more"] is True


@pytest.mark.django_db(transaction=True)
async def test_catch_up_at_the_limit_is_complete_in_hello(layer, room, alice, connect, settings):
    settings.CHAT_CATCHUP_LIMIT = 20
    first = await database_sync_to_async(Message.objects.create)(
        room=room, author=alice, body="seen"
    )
    await database_sync_to_async(Message.objects.bulk_create)(
        [Message(room=room, author=alice, body=f"m{n}") for n in range(20)]
    )
    _, hello = await connect(alice, room, query=f"after={first.id}")
    assert hello["truncated"] is False
    assert len(hello["messages"]) == 20
