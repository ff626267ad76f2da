"""The group-commit writer (chatrooms/writer.py): a burst of messages is one
batch, stored in the order sent, published in id order once stored; repeats
are idempotent; one bad message fails alone; and on PostgreSQL a batch
waits for its room's order lock (the cross-process proof is
tests/test_order.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.utils import timezone

from chatrooms import protocol
from chatrooms.hub import Outbox, hub
from chatrooms.models import Message
from chatrooms.writer import ORDER_LOCKS, TRANSIENT, UNAVAILABLE, Writer
from tests.chatrooms.conftest import eventually
from tests.chatrooms.test_hub import FakeSocket

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
async def writer():
    one = Writer()
    yield one
    await one.close()


def submit(writer, room, user, body, client_id=""):
    return writer.submit(
        room_id=room.id,
        author_id=user.id,
        username=user.username,
        display_name=user.shown_name,
        body=body,
        client_id=client_id,
    )


@pytest.fixture
async def listener(layer, room):
    """A socket of the room on this process's hub: the frames it receives, decoded."""
    socket = FakeSocket()
    outbox = Outbox(socket.send, room.id)
    await hub.join(room.id, "listener", outbox)
    outbox.release(protocol.encode({"type": "hello"}), 0)
    yield socket
    hub.detach("listener", room_id=room.id)


def received(socket: FakeSocket) -> list[dict]:
    return [protocol.decode_json(text) for text in socket.texts[1:]]


def test_the_sql_names_the_message_table_and_its_columns():
    assert Message._meta.db_table == "chatrooms_message"
    columns = {field.column for field in Message._meta.concrete_fields}
    assert {"room_id", "author_id", "body", "client_id", "created_at"} <= columns


async def test_a_burst_is_one_batch_stored_in_order_and_published_in_id_order(
    writer, listener, room, alice, bob, monkeypatch
):
    batches = []
    real = Writer._store

    async def counted(self, batch):
        batches.append(len(batch))
        return await real(self, batch)

    monkeypatch.setattr(Writer, "_store", counted)
    answers = [submit(writer, room, alice if n % 2 else bob, f"m{n}", f"c{n}") for n in range(40)]
    results = await asyncio.gather(*answers)
    assert batches == [40]
    assert all(result.created for result in results)
    ids = [result.frame["id"] for result in results]
    assert ids == sorted(ids) and len(set(ids)) == 40
    assert [r.frame["message"] for r in results] == [f"m{n}" for n in range(40)]
    assert results[1].frame["display_name"] == "Alice Liddell"
    bodies = [
        body
        async for body in Message.objects.filter(room=room)
        .order_by("id")
        .values_list("body", flat=True)
    ]
    assert bodies == [f"m{n}" for n in range(40)]
    await eventually(lambda: len(received(listener)) == 40)
    assert [frame["id"] for frame in received(listener)] == ids  # published once stored, in order


async def test_the_next_batch_fills_while_one_is_stored(writer, layer, room, alice, monkeypatch):
    batches = []
    real = Writer._store
    release = asyncio.Event()

    async def slow(self, batch):
        batches.append(len(batch))
        if len(batches) == 1:
            await release.wait()
        return await real(self, batch)

    monkeypatch.setattr(Writer, "_store", slow)
    first = submit(writer, room, alice, "alone")
    await eventually(lambda: batches == [1])
    rest = [submit(writer, room, alice, f"then {n}") for n in range(5)]
    release.set()
    await asyncio.gather(first, *rest)
    assert batches == [1, 5]  # no timer: whatever waited went in one statement


async def test_a_repeated_client_id_is_stored_once_and_answered_with_the_stored_one(
    writer, listener, room, alice
):
    first, again = await asyncio.gather(
        submit(writer, room, alice, "hi", "same"), submit(writer, room, alice, "hi?", "same")
    )
    later = await submit(writer, room, alice, "hi!!", "same")
    assert first.created and not again.created and not later.created
    assert first.frame["id"] == again.frame["id"] == later.frame["id"]
    assert later.frame["message"] == "hi"
    assert await Message.objects.filter(client_id="same").acount() == 1
    # Each answer is broadcast: a repeat means its sender saw no echo.
    await eventually(lambda: len(received(listener)) == 3)


async def test_a_repeat_of_a_deleted_message_does_not_bring_it_back(writer, room, alice):
    stored = await submit(writer, room, alice, "oops", "gone")
    await Message.objects.filter(id=stored.frame["id"]).aupdate(deleted_at=timezone.now())
    again = await submit(writer, room, alice, "oops", "gone")
    assert again.frame == protocol.delete_frame(id=stored.frame["id"])
    assert not again.created


async def test_one_bad_message_fails_alone(writer, layer, room, alice):
    class Nobody:
        id, username, shown_name = 10**9, "nobody", "nobody"

    answers = [
        submit(writer, room, alice, "before"),
        submit(writer, room, Nobody, "no such author"),
        submit(writer, room, alice, "after"),
    ]
    done = await asyncio.gather(*answers, return_exceptions=True)
    assert done[0].created and done[2].created
    assert isinstance(done[1], Exception) and not isinstance(done[1], TRANSIENT)
    bodies = [b async for b in Message.objects.order_by("id").values_list("body", flat=True)]
    assert bodies == ["before", "after"]


async def test_a_failure_of_storage_answers_every_sender_and_the_writer_goes_on(
    writer, layer, room, alice, monkeypatch
):
    from django.db.utils import OperationalError

    real = Writer._store

    async def down(self, batch):
        raise OperationalError("connection refused")

    monkeypatch.setattr(Writer, "_store", down)
    failed = await asyncio.gather(
        *(submit(writer, room, alice, f"m{n}", f"k{n}") for n in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(exc, OperationalError) for exc in failed)
    monkeypatch.setattr(Writer, "_store", real)
    stored = await asyncio.gather(
        *(submit(writer, room, alice, f"m{n}", f"k{n}") for n in range(3))
    )
    assert [s.frame["message"] for s in stored] == ["m0", "m1", "m2"]


class HeldLock:
    """Another process holding the room's order lock, on a connection of its own."""

    def __init__(self, room_id: int):
        import psycopg

        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        self.conn = psycopg.connect(**params, autocommit=True)
        self.conn.execute("SELECT pg_advisory_lock(%s::int, %s::int)", (ORDER_LOCKS, room_id))

    def release(self):
        self.conn.execute("SELECT pg_advisory_unlock_all()")
        self.conn.close()


async def test_a_batch_waits_for_the_rooms_order_lock(on_postgres, writer, layer, room, alice):
    held = await asyncio.to_thread(HeldLock, room.id)
    answer = submit(writer, room, alice, "after the other process")
    await asyncio.sleep(0.5)
    assert not answer.done()
    assert not await Message.objects.filter(room=room).aexists()
    await asyncio.to_thread(held.release)
    stored = await answer
    assert stored.created


async def test_a_lock_held_too_long_answers_unavailable(
    on_postgres, writer, layer, room, alice, monkeypatch
):
    monkeypatch.setattr("chatrooms.writer.LOCK_TIMEOUT_MS", 300)
    held = await asyncio.to_thread(HeldLock, room.id)
    try:
        with pytest.raises(UNAVAILABLE):
            await submit(writer, room, alice, "blocked", "b1")
    finally:
        await asyncio.to_thread(held.release)
    assert (await submit(writer, room, alice, "blocked", "b1")).created


async def test_the_sync_path_takes_the_same_lock(on_postgres, room, alice):
    from chatrooms import services

    held = await asyncio.to_thread(HeldLock, room.id)
    done = threading.Event()

    def create():
        services.message_create(room_id=room.id, user=alice, body="sync")
        done.set()

    task = asyncio.create_task(database_sync_to_async(create)())
    await asyncio.sleep(0.5)
    assert not done.is_set()
    await asyncio.to_thread(held.release)
    await task
    assert done.is_set()
