"""The hot queries stay on their index whatever the statistics say.

PostgreSQL only (CI runs it there): on a table nobody has analyzed, with
deleted messages in between, the history, catch-up and unread-count queries
of one room must read the partial (room, id) index over live messages,
never scan the room's or the table's rows.
"""

from __future__ import annotations

import pytest
from django.db import connection

from chatrooms import selectors
from chatrooms.models import Message, Room

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy_rooms(on_postgres, user_factory):
    """Two rooms of 3,000 messages, every tenth deleted; no ANALYZE afterwards."""
    author = user_factory(username="writer")
    rooms = [Room.objects.create(slug=f"busy-{n}", name=f"Busy {n}") for n in range(2)]
    Message.objects.bulk_create(
        Message(room=room, author=author, body=f"m{i}") for i in range(3000) for room in rooms
    )
    ids = list(Message.objects.order_by("id").values_list("id", flat=True))
    Message.objects.filter(id__in=ids[::10]).update(deleted_at="2026-01-01T00:00:00Z")
    return rooms


def plan_of(queryset) -> str:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_history_reads_the_live_index(busy_rooms):
    room = busy_rooms[0]
    last = Message.objects.filter(room=room).order_by("-id").values_list("id", flat=True)[0]
    for before in (None, last - 500):
        qs = selectors._live_messages(room.id)
        if before is not None:
            qs = qs.filter(id__lt=before)
        plan = plan_of(qs.order_by("-id").values(*selectors._MESSAGE_FIELDS)[:51])
        assert "message_room_live" in plan, plan
        assert "Seq Scan on chatrooms_message" not in plan, plan


def test_catch_up_reads_the_live_index(busy_rooms):
    room = busy_rooms[1]
    after = Message.objects.filter(room=room).order_by("-id").values_list("id", flat=True)[40]
    qs = selectors._live_messages(room.id).filter(id__gt=after).order_by("id")
    plan = plan_of(qs.values(*selectors._MESSAGE_FIELDS)[:501])
    assert "message_room_live" in plan, plan
    assert "Seq Scan on chatrooms_message" not in plan, plan
    # And the answer is right: the 40 newest live messages after it (minus deleted).
    catch_up = selectors.message_catch_up(room_id=room.id, after=after, limit=500, page=50)
    expected = list(
        Message.objects.filter(room=room, id__gt=after, deleted_at__isnull=True)
        .order_by("id")
        .values_list("id", flat=True)
    )
    assert [m["id"] for m in catch_up.messages if m["type"] == "chat.message"] == expected
