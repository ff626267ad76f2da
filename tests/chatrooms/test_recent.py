"""hello's history from the hub's per-room ring (Hub.recent_page, RecentFrames):
byte for byte what the database says, after any mix of new messages, edits
and deletes, from the socket or from synchronous services (the admin, a
command); filled from the database once, and the first sockets' join race
kept: a message stored while the ring is read reaches the socket once."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chatrooms import protocol, selectors, services
from chatrooms.hub import RecentFrames, hub
from chatrooms.models import Message
from tests.chatrooms.conftest import eventually

pytestmark = [pytest.mark.django_db(transaction=True)]

# The ring is kept only with Redis, where every write of every process and
# command reaches the hub (Hub.recent_page); without it hello reads the
# database (test_without_redis_hello_reads_the_database).
redis_only = pytest.mark.parametrize("layer", ["redis"], indirect=True)

PAGE = 5  # hello's page here; the ring keeps twice that
message_history = selectors.message_history  # the real one, whatever a test patches


@pytest.fixture(autouse=True)
async def _small_page(settings):
    settings.CHAT_HISTORY_PAGE = PAGE
    settings.CHAT_CONNECT_CACHE_SECONDS = 3600
    hub._on_loop()  # the hub starts afresh on this test's loop now


@pytest.fixture
def history_reads(monkeypatch):
    calls = []
    real = selectors.message_history

    def counting(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(selectors, "message_history", counting)
    return calls


def database_page(room_id: int) -> str:
    frames, has_more = message_history(room_id=room_id, before=None, limit=PAGE)
    return protocol.encode({"messages": frames, "has_more": has_more})


def hello_page(hello: dict) -> str:
    return protocol.encode({"messages": hello["messages"], "has_more": hello["has_more"]})


async def expect(sock, kind: str) -> dict:
    """The next frame of that type, whatever comes before it."""
    while (frame := await sock.recv())["type"] != kind:
        pass
    return frame


async def ring_agrees(room) -> bool:
    """The ring holds what the database would answer now (all frames heard)."""
    ring = hub.recent.get(room.id)
    if ring is None or not ring.ready.done() or ring.page(PAGE) is None:
        return False
    messages, has_more = ring.page(PAGE)
    ours = protocol.encode({"messages": messages, "has_more": has_more})
    return ours == await database_sync_to_async(database_page)(room.id)


async def fresh_hello_agrees(connect, user, room, history_reads, *, from_ring=True) -> None:
    reads = len(history_reads)
    sock, hello = await connect(user, room)
    assert hello_page(hello) == await database_sync_to_async(database_page)(room.id)
    if from_ring:
        assert len(history_reads) == reads, "hello read the database"
    await sock.close()


@redis_only
async def test_hello_from_the_ring_equals_the_database_after_sends_edits_and_deletes(
    layer, room, alice, bob, connect, message_factory, user_factory, history_reads
):
    for n in range(12):
        await database_sync_to_async(message_factory)(room, alice if n % 2 else bob, f"old {n}")
    alice_sock, hello = await connect(alice, room)  # fills the ring: 10 of 12
    assert len(history_reads) == 1 and history_reads[0]["limit"] == 2 * PAGE
    assert hello_page(hello) == await database_sync_to_async(database_page)(room.id)
    bob_sock, _ = await connect(bob, room)
    await fresh_hello_agrees(connect, bob, room, history_reads)

    # New messages from sockets, and one from a synchronous service (a command).
    sent = []
    for text in ("new 1", "new 2", "new 3"):
        await bob_sock.send({"type": "chat.message", "message": text})
        sent.append((await expect(alice_sock, "chat.message"))["id"])
    await database_sync_to_async(services.message_create)(room_id=room.id, user=alice, body="cmd")
    await expect(alice_sock, "chat.message")
    await eventually(lambda: ring_agrees(room), what="the ring agrees after sends")
    await fresh_hello_agrees(connect, bob, room, history_reads)

    # Edits: one in the page, one held beyond it, one older than the ring.
    stored = await database_sync_to_async(
        lambda: list(Message.objects.filter(room=room).order_by("id").values("id", "author_id"))
    )()
    alices = [m["id"] for m in stored if m["author_id"] == alice.id]
    for message_id, text in ((alices[-1], "edited last"), (alices[-4], "edited held")):
        await alice_sock.send({"type": "chat.edit", "id": message_id, "message": text})
        assert (await expect(bob_sock, "chat.edit"))["message"] == text
    await alice_sock.send({"type": "chat.edit", "id": alices[0], "message": "edited oldest"})
    await expect(bob_sock, "chat.edit")
    await eventually(lambda: ring_agrees(room), what="the ring agrees after edits")
    await fresh_hello_agrees(connect, bob, room, history_reads)

    # Deletes: own, by the owner, by staff in the admin (synchronous).
    await bob_sock.send({"type": "chat.delete", "id": sent[0]})
    await expect(alice_sock, "chat.delete")
    await alice_sock.send({"type": "chat.delete", "id": sent[1]})  # the owner deletes bob's
    await expect(bob_sock, "chat.delete")
    staff_deleted = await database_sync_to_async(Message.objects.get)(id=alices[-2])
    await database_sync_to_async(services.message_delete_by_staff)(message=staff_deleted)
    await expect(bob_sock, "chat.delete")
    await eventually(lambda: ring_agrees(room), what="the ring agrees after deletes")
    await fresh_hello_agrees(connect, bob, room, history_reads)

    # Deleting down to fewer than a page held: the next hello reads the database again.
    ring = hub.recent[room.id]
    for message_id in list(ring.ids)[: len(ring.ids) - PAGE + 1]:
        message = await database_sync_to_async(Message.objects.get)(id=message_id)
        await database_sync_to_async(services.message_delete_by_staff)(message=message)
        await expect(bob_sock, "chat.delete")
    assert hub.recent[room.id].page(PAGE) is None
    await fresh_hello_agrees(connect, bob, room, history_reads, from_ring=False)
    await fresh_hello_agrees(connect, bob, room, history_reads)


@redis_only
async def test_a_small_room_says_it_has_no_more(layer, room, alice, connect, history_reads):
    sock, hello = await connect(alice, room)
    assert (hello["messages"], hello["has_more"]) == ([], False)
    await sock.send({"type": "chat.message", "message": "first"})
    await sock.recv_type("chat.message")
    await eventually(lambda: ring_agrees(room), what="the ring agrees")
    await fresh_hello_agrees(connect, alice, room, history_reads)


@redis_only
@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_message_stored_while_the_ring_is_read_reaches_the_first_socket_once(
    layer, room, alice, bob, connect, monkeypatch, history_reads, when
):
    """The first socket joins the room before the ring is read; a message
    committed just before or just after that read is in hello or arrives
    live, never both and never neither; and the ring has it."""
    real = selectors.message_history
    raced = []

    def store():
        frame, _ = services.message_create(room_id=room.id, user=bob, body="raced")
        raced.append(frame["id"])

    def racing(**kwargs):
        if raced:
            return real(**kwargs)
        if when == "before":
            store()
            return real(**kwargs)
        result = real(**kwargs)
        store()  # committed after the read: only its frame can bring it
        return result

    monkeypatch.setattr(selectors, "message_history", racing)
    sock, hello = await connect(alice, room)
    seen = [m["id"] for m in hello["messages"] if m["id"] in raced]
    while not await sock.nothing(timeout=0.3):
        frame = await sock.recv()
        if frame["type"] == "chat.message" and frame["id"] in raced:
            seen.append(frame["id"])
    assert seen == raced
    monkeypatch.setattr(selectors, "message_history", real)
    await eventually(lambda: ring_agrees(room), what="the ring has the raced message")
    _, later = await connect(bob, room)
    assert [m["id"] for m in later["messages"]] == raced


@redis_only
async def test_sockets_arriving_together_read_the_history_once(
    layer, room, alice, bob, connect, history_reads
):
    import asyncio

    hellos = await asyncio.gather(*(connect(user, room) for user in (alice, bob, alice, bob)))
    assert len(history_reads) == 1
    assert len({hello_page(hello) for _, hello in hellos}) == 1


@redis_only
async def test_the_ring_goes_with_the_rooms_last_local_socket(layer, room, alice, connect):
    sock, _ = await connect(alice, room)
    assert room.id in hub.recent
    await sock.close()
    await eventually(lambda: room.id not in hub.recent, what="the ring dropped")


@redis_only
async def test_a_ring_older_than_the_cache_lifetime_is_read_again(
    layer, room, alice, connect, settings, history_reads
):
    await connect(alice, room)
    hub.recent[room.id].filled_at -= 3601
    await connect(alice, room)
    assert len(history_reads) == 2


def test_ring_rules_by_hand():
    """The invariant without sockets: the latest N live messages, in id order."""
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        ring = RecentFrames(4, None, loop)
        ring.apply({"type": "chat.message", "id": 7})  # heard while filling: applied after
        ring.fill([{"type": "chat.message", "id": i} for i in (3, 5, 6)], True, 0.0)
        assert ring.ids == [3, 5, 6, 7] and not ring.complete
        ring.apply({"type": "chat.message", "id": 2})  # older than all held, older unknown
        assert ring.ids == [3, 5, 6, 7]
        ring.apply({"type": "chat.message", "id": 4})  # committed late: in id order
        assert ring.ids == [4, 5, 6, 7]
        ring.apply({"type": "chat.edit", "id": 6, "message": "x", "edited_at": "t"})
        assert ring.frames[2] == {"type": "chat.message", "id": 6, "message": "x", "edited_at": "t"}
        ring.apply({"type": "chat.delete", "id": 5})
        frames, has_more = ring.page(2)
        assert ([frame["id"] for frame in frames], has_more) == ([6, 7], True)
        assert ring.page(3) is None  # 3 held, older unknown: not enough for a page of 3
        ring.complete = True
        assert [frame["id"] for frame in ring.page(3)[0]] == [4, 6, 7]
        assert ring.page(3)[1] is False
    finally:
        loop.close()


async def test_without_redis_hello_reads_the_database(settings, room, alice, bob, connect):
    """A command's write (another process) is not heard without Redis: hello reads it."""
    from channels.db import database_sync_to_async

    from chatrooms.models import Message

    settings.REDIS_URL = ""
    hub.settings_changed()
    first, _ = await connect(alice, room)
    # As `manage.py shell` would: stored, and announced to nobody here.
    await database_sync_to_async(Message.objects.create)(room=room, author=alice, body="offline")
    _, hello = await connect(bob, room)
    assert [m["message"] for m in hello["messages"]] == ["offline"]
    assert room.id not in hub.recent
