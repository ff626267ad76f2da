"""chatrooms/presence.py: who is online in which room.

A user is online while one of their sockets is: `join` and `leave` count
sockets, so a second tab announces nothing. The two stores give the same
answers (MemoryPresence, one process; RedisPresence, shared by every
process). On Redis a socket that nobody refreshes expires, and its user is
reaped: that is how the users of a killed process leave.

The store tests need no database: their rooms are numbers of their own, far
from the test database's ids, under this run's Redis prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import types
import uuid

import pytest
from channels.db import database_sync_to_async

from chatrooms import presence
from chatrooms.presence import Conn, MemoryPresence, RedisPresence, Tracker
from chatrooms.redis import get_redis, key
from tests.chatrooms.conftest import eventually

_rooms = itertools.count(3_000_000_000)


def new_room() -> int:
    return next(_rooms)


def tab(room_id: int, username: str, n: int = 1, display_name: str = "") -> Conn:
    """One socket of `username` in the room (its n-th tab)."""
    return Conn(f"{username}-{room_id}-{n}", room_id, username, display_name)


@pytest.fixture
def clock(monkeypatch):
    """presence's time.time(), moved by hand: expiry without waiting for it."""
    clock = types.SimpleNamespace(now=1_000_000.0)
    monkeypatch.setattr(presence, "time", types.SimpleNamespace(time=lambda: clock.now))
    return clock


# --- Both stores ---------------------------------------------------------------------


async def test_a_user_is_online_while_one_of_their_sockets_is(store):
    room = new_room()
    first, second = tab(room, "bob", 1), tab(room, "bob", 2)
    assert await store.join(first) is True  # 0 -> 1 socket: bob came online
    assert await store.join(second) is False  # a second tab announces nothing
    assert await store.online(room) == ["bob"]
    assert await store.leave(first) is False  # the other tab is still open
    assert await store.online(room) == ["bob"]
    assert await store.leave(second) is True  # 1 -> 0: bob left
    assert await store.online(room) == []


async def test_leaving_with_an_unknown_or_gone_socket_changes_nothing(store):
    room = new_room()
    alice = tab(room, "alice")
    assert await store.leave(alice) is False  # never joined
    await store.join(alice)
    assert await store.leave(tab(room, "alice", 2)) is False  # not one of her sockets
    assert await store.leave(Conn(alice.conn_id, new_room(), "alice")) is False  # another room
    assert await store.online(room) == ["alice"]
    assert await store.leave(alice) is True
    assert await store.leave(alice) is False  # already gone: said once


async def test_rooms_and_users_are_counted_apart(store):
    general, random_room, empty = new_room(), new_room(), new_room()
    await store.join(tab(general, "carol"))
    await store.join(tab(general, "alice"))
    await store.join(tab(random_room, "alice"))
    for n in (1, 2, 3):  # three tabs count as one person
        await store.join(tab(general, "bob", n))
    assert await store.online(general) == ["alice", "bob", "carol"]  # sorted
    assert await store.online(random_room) == ["alice"]
    assert await store.online(empty) == []
    assert store.online_counts([general, random_room, empty]) == {
        general: 3,
        random_room: 1,
        empty: 0,
    }
    await store.leave(tab(random_room, "alice"))
    assert await store.online(general) == ["alice", "bob", "carol"]  # still here
    assert store.online_counts([random_room]) == {random_room: 0}


async def test_display_names_are_the_latest_joins(store):
    room = new_room()
    await store.join(tab(room, "alice", 1, display_name="Alice"))
    await store.join(tab(room, "bob"))
    assert await store.display_names(room, ["alice", "bob", "carol"]) == {
        "alice": "Alice",
        "bob": "bob",  # no display name: the username
        "carol": "carol",  # not in the room: the username
    }
    await store.join(tab(room, "alice", 2, display_name="Alice Liddell"))  # renamed meanwhile
    assert await store.display_names(room, ["alice"]) == {"alice": "Alice Liddell"}
    assert await store.display_names(room, []) == {}


async def test_join_listing_is_a_join_then_the_online_list_with_names(store, clock, settings):
    """A handshake's one presence call (on Redis one script, one round trip)."""
    settings.CHAT_PRESENCE_TIMEOUT = 5
    room = new_room()
    assert await store.join_listing(tab(room, "carol", display_name="Carol Ø 🎈")) == (
        True,
        ["carol"],
        {"carol": "Carol Ø 🎈"},
    )
    await store.join(tab(room, "alice", display_name="Alice"))
    joined, online, names = await store.join_listing(tab(room, "bob"))
    assert (joined, online) == (True, ["alice", "bob", "carol"])  # sorted
    assert names == {"alice": "Alice", "bob": "bob", "carol": "Carol Ø 🎈"}
    assert list(names) == online
    assert (await store.join_listing(tab(room, "bob", 2)))[0] is False  # a second tab
    if isinstance(store, RedisPresence):  # expiry: only the Redis store has it
        clock.now += 6
        assert await store.join_listing(tab(room, "dave")) == (True, ["dave"], {"dave": "dave"})


@pytest.mark.redis
async def test_join_listing_is_one_round_trip_and_survives_a_script_cache_loss(shared, monkeypatch):
    room = new_room()
    client, calls = get_redis(), []

    class Counting:
        def __getattr__(self, name):
            attribute = getattr(client, name)
            if not callable(attribute):
                return attribute

            async def call(*args, **kwargs):
                calls.append(name)
                return await attribute(*args, **kwargs)

            return call

    monkeypatch.setattr(presence, "get_redis", lambda: Counting())
    await shared.join_listing(tab(room, "alice"))  # may load the script first
    calls.clear()
    assert (await shared.join_listing(tab(room, "bob")))[1] == ["alice", "bob"]
    assert calls == ["evalsha"]
    # A Redis that lost its scripts (a restart) answers NOSCRIPT: loaded, run.
    fresh = presence._Script(presence._JOIN_LISTING + f"-- {uuid.uuid4().hex}\n")  # unloaded
    monkeypatch.setattr(presence, "_join_listing_script", fresh)
    calls.clear()
    assert (await shared.join_listing(tab(room, "carol")))[1] == ["alice", "bob", "carol"]
    assert calls == ["evalsha", "script_load", "evalsha"]


@pytest.mark.redis
async def test_a_burst_of_joins_shares_a_bounded_pool_of_connections(shared):
    """A connect storm: every join answers right, over at most POOL_SIZE connections
    (redis-py's default pool opened one connection per waiting command)."""
    from chatrooms import redis as chat_redis

    room, n = new_room(), 5 * chat_redis.POOL_SIZE
    answers = await asyncio.gather(*(shared.join_listing(tab(room, f"u{i:03}")) for i in range(n)))
    assert all(joined for joined, _, _ in answers)
    assert max(len(online) for _, online, _ in answers) == n
    assert await shared.online(room) == sorted(f"u{i:03}" for i in range(n))
    pool = get_redis().connection_pool
    opened = len(pool._available_connections) + len(pool._in_use_connections)
    assert 0 < opened <= chat_redis.POOL_SIZE


@pytest.mark.redis
async def test_both_stores_give_the_same_answers(settings, redis_url):
    """One scripted crowd of tabs coming and going, every answer compared."""
    settings.REDIS_URL = redis_url
    memory, shared = MemoryPresence(), RedisPresence()
    rooms = [new_room(), new_room()]
    sockets = [
        tab(room, user, n, display_name=user.title())
        for room in rooms
        for user in ("alice", "bob", "carol")
        for n in (1, 2, 3)
    ]
    steps = random.Random(11)  # the same script every run
    open_ = set()
    for _ in range(200):
        conn = steps.choice(sockets)
        if conn in open_ and steps.random() < 0.7:
            answers = await memory.leave(conn), await shared.leave(conn)
            open_.discard(conn)
        elif conn not in open_:
            answers = await memory.join(conn), await shared.join(conn)
            open_.add(conn)
        else:
            continue
        assert answers[0] == answers[1], (conn, answers)
        for room in rooms:
            online = await memory.online(room)
            expected = sorted({c.username for c in open_ if c.room_id == room})
            assert online == await shared.online(room) == expected
            names = await memory.display_names(room, online)
            assert names == await shared.display_names(room, online)
        assert memory.online_counts(rooms) == shared.online_counts(rooms)
    for conn in open_:
        await shared.leave(conn)


# --- Redis: expiry and reaping -------------------------------------------------------


@pytest.fixture
def shared(settings, redis_url):
    settings.REDIS_URL = redis_url
    return RedisPresence()


@pytest.mark.redis
async def test_on_redis_a_socket_nobody_refreshes_expires_and_its_user_is_reaped_once(
    shared, clock, settings
):
    settings.CHAT_PRESENCE_TIMEOUT = 5
    room = new_room()
    alice, bob = tab(room, "alice", display_name="Alice"), tab(room, "bob", display_name="Bob")
    await shared.join(alice)
    await shared.join(bob)  # both expire at 1_000_005
    clock.now += 4
    assert await shared.join(alice) is False  # her process refreshes her: not a new join
    assert await shared.reap(room) == []  # nobody expired yet
    clock.now += 2  # bob's socket expired a second ago; alice's lives until 1_000_009
    assert await shared.online(room) == ["alice"]
    assert shared.online_counts([room]) == {room: 1}
    assert await shared.reap(room) == ["bob"]
    assert await shared.reap(room) == []  # removed once: one process says he left
    assert await shared.display_names(room, ["bob"]) == {"bob": "bob"}  # his name went too
    clock.now += 4  # alice, not refreshed since, expires as well
    assert await shared.online(room) == []
    assert await shared.reap(room) == ["alice"]


@pytest.mark.redis
async def test_on_redis_a_socket_back_after_expiry_or_a_lost_key_is_a_join_again(
    shared, clock, settings
):
    """Tracker.refresh announces these: the room saw the user leave, or Redis forgot them."""
    settings.CHAT_PRESENCE_TIMEOUT = 5
    room = new_room()
    bob = tab(room, "bob")
    assert await shared.join(bob) is True
    clock.now += 6  # expired, not reaped yet
    assert await shared.join(bob) is True
    # Redis lost everything (a restart, a flush): the next refresh is a join.
    keys = [name async for name in get_redis().scan_iter(match=key("presence", room) + "*")]
    assert keys
    await get_redis().delete(*keys)
    assert await shared.online(room) == []
    assert await shared.join(bob) is True
    assert await shared.online(room) == ["bob"]
    # Only the room's list lost (his socket's own entry kept): the room no
    # longer shows him, so his refresh is a join again.
    await get_redis().delete(key("presence", room))
    assert await shared.join(bob) is True
    assert await shared.join(bob) is False  # listed again: a refresh
    # A second tab after the first expired: bob was gone, so he came back.
    clock.now += 6
    assert await shared.join(tab(room, "bob", 2)) is True


@pytest.mark.redis
async def test_a_leave_after_expiry_says_nothing_twice(shared, clock, settings):
    """A socket that expired and was reaped (its leave said) then closes: silence."""
    settings.CHAT_PRESENCE_TIMEOUT = 5
    room = new_room()
    bob = tab(room, "bob")
    await shared.join(bob)
    clock.now += 6
    assert await shared.reap(room) == ["bob"]
    assert await shared.leave(bob) is False


@pytest.mark.redis
async def test_the_tracker_keeps_its_sockets_alive_and_reaps_a_dead_processs_users(
    settings, redis_url, monkeypatch
):
    """Real time, with a CHAT_PRESENCE_TIMEOUT of 1 s: the keep-alive refreshes
    this process's sockets every 1/3 s and reaps users whose sockets stopped
    being refreshed, as those of a killed process do."""
    settings.REDIS_URL = redis_url
    settings.CHAT_PRESENCE_TIMEOUT = 1
    said: list[tuple[int, str, str]] = []

    async def broadcast(room_id, username, status, skip=""):
        said.append((room_id, username, status))

    monkeypatch.setattr(presence, "broadcast_presence", broadcast)
    room = new_room()
    here = Tracker()  # this process
    killed = RedisPresence()  # another process, killed: its sockets are never refreshed
    alice = tab(room, "alice")
    await killed.join(tab(room, "bob"))
    assert await here.join(alice) is True
    try:
        await eventually(lambda: (room, "bob", "leave") in said, what="bob reaped")
        assert await here.store.online(room) == ["alice"]
        # Let time pass (the point of the test): three timeouts after she
        # joined, alice's socket, refreshed, is still there.
        await asyncio.sleep(3)
        assert await here.store.online(room) == ["alice"]
        assert said == [(room, "bob", "leave")]
        assert await here.leave(alice) is True
        assert await here.store.online(room) == []
    finally:
        here.forget(alice)
        if here._task is not None:
            here._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await here._task


# --- Over the socket: what rooms are told ---------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_presence_join_and_leave_once_per_user(layer, room, alice, bob, connect):
    a, _ = await connect(alice, room)
    b1, hello = await connect(bob, room)
    assert hello["online"] == ["alice", "bob"]
    join = await a.recv_type("presence")
    assert join == {
        "type": "presence",
        "user": "bob",
        "status": "join",
        "online": ["alice", "bob"],
        "names": {"alice": "Alice Liddell", "bob": "bob"},
    }
    assert hello["names"] == {"alice": "Alice Liddell", "bob": "bob"}
    b2, _ = await connect(bob, room)  # a second tab: no event
    await b1.close()  # returns once its disconnect has run (and published what it would)
    await b2.send({"type": "chat.message", "message": "still here"})
    # A room's frames arrive in the order they were published: a leave for
    # the first tab would come before bob's message.
    assert (await a.recv())["type"] == "chat.message"
    await b2.close()
    leave = await a.recv_type("presence")
    assert leave == {
        "type": "presence",
        "user": "bob",
        "status": "leave",
        "online": ["alice"],
        "names": {"alice": "Alice Liddell"},
    }


@pytest.mark.django_db(transaction=True)
async def test_lobby_shows_online_counts(layer, room, alice, bob, connect):
    from django.test import Client

    def lobby_counts(user):
        client = Client()
        client.force_login(user)
        return {r["room"].slug: r["online"] for r in client.get("/chats/").context["my_rooms"]}

    await connect(alice, room)
    await connect(bob, room)
    await connect(bob, room)  # a second tab counts once
    assert (await database_sync_to_async(lobby_counts)(alice))["general"] == 2


async def test_a_burst_of_changes_goes_out_coalesced_with_the_latest_list(monkeypatch):
    """While a room's presence frame is being published, the changes that come
    wait and go out as one frame naming the latest, with the list read then;
    another room is not held up, and a caller that goes away loses nothing."""
    room, other = new_room(), new_room()
    published: list[tuple[int, dict, str]] = []
    gate = asyncio.Event()
    online = {room: ["ann"], other: ["oz"]}

    async def publish(room_id, data, skip=""):
        published.append((room_id, json.loads(data), skip))
        if room_id == room:
            await gate.wait()

    async def online_with_names(room_id):
        return list(online[room_id]), {name: name.title() for name in online[room_id]}

    monkeypatch.setattr(presence.hub, "publish", publish)
    monkeypatch.setattr(presence.tracker, "online_with_names", online_with_names)

    first = asyncio.create_task(
        presence.broadcast_presence(room, "ann", "join", skip="ann-1", listing=(["ann"], {}))
    )
    await eventually(lambda: len(published) == 1)  # in flight, held at the gate
    for name in ("bea", "cy", "dee"):
        online[room].append(name)
        await presence.broadcast_presence(room, name, "join")  # returns at once: it waits
    online[room].remove("bea")
    gone = asyncio.create_task(presence.broadcast_presence(room, "bea", "leave"))
    await presence.broadcast_presence(other, "oz", "join")  # another room goes straight out
    assert [(r, f["user"]) for r, f, _ in published] == [(room, "ann"), (other, "oz")]
    first.cancel()  # the first caller goes away: what waits is still published
    await gone
    gate.set()
    await eventually(lambda: len(published) == 3)
    room_id, frame, skip = published[2]
    assert (room_id, skip) == (room, "")
    assert frame == {
        "type": "presence",
        "user": "bea",
        "status": "leave",
        "online": ["ann", "cy", "dee"],
        "names": {"ann": "Ann", "cy": "Cy", "dee": "Dee"},
    }
    await asyncio.sleep(0.05)
    assert len(published) == 3  # nothing more
    await presence.broadcast_presence(room, "eve", "join", listing=(["ann", "eve"], {}))
    assert published[3][1]["user"] == "eve"  # the burst is over: straight out again
