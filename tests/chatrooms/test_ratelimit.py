"""chatrooms/ratelimit.py: CHAT_RATE_LIMIT, at most N messages per user per
room in any window of S seconds; CHAT_USER_RATE_LIMIT, per user across all
rooms, checked with it in one call; and the budget of a socket's other frames.

The window slides (no fixed buckets); with Redis it is shared by every
process, and while Redis is unreachable each process counts on its own. The
unit tests move ratelimit's clock by hand, and run on both counters; their
users and rooms are numbers of their own, under this run's Redis prefix.
The creation limits (rooms, invites) are in test_caps.py.
"""

from __future__ import annotations

import itertools
import logging

import pytest
from channels.db import database_sync_to_async

from chatrooms import ratelimit
from chatrooms.models import Message
from chatrooms.ratelimit import FrameBudget, message_allowed
from chatrooms.redis import get_redis, key
from tests.live import free_port

_ids = itertools.count(4_000_000_000)
START = 1_000_000.0  # the hand-moved clock's first reading


def new_id() -> int:
    return next(_ids)


class Clock:
    """Stands for ratelimit's `time` module: time() and monotonic() read `now`."""

    def __init__(self) -> None:
        self.now = START

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(ratelimit, "time", clock)
    return clock


@pytest.fixture
def fresh_local(monkeypatch):
    """This process's counters, empty for the test and put back after it."""
    monkeypatch.setattr(ratelimit, "_local", {})
    monkeypatch.setattr(ratelimit, "_local_sweep_at", 0.0)


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
def counter(request, settings, fresh_local):
    """Each test twice: counted in this process (no REDIS_URL), then in Redis.

    The per-room tests keep the per-user limit out of their way; its own tests set it.
    """
    settings.REDIS_URL = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    settings.CHAT_USER_RATE_LIMIT = None
    return request.param


async def allowed(user_id: int, room_id: int) -> bool:
    return await message_allowed(user_id=user_id, room_id=room_id)


# --- The sliding window --------------------------------------------------------------


async def test_n_messages_in_any_window_then_one_more_each_time_one_leaves_it(
    counter, clock, settings
):
    settings.CHAT_RATE_LIMIT = (3, 10.0)
    user, room = new_id(), new_id()
    for at in (0, 1, 2):
        clock.now = START + at
        assert await allowed(user, room), at
    clock.now = START + 3
    assert not await allowed(user, room)  # a fourth within 10 s
    clock.now = START + 9.75
    assert not await allowed(user, room)  # the first, sent at 0, is still in the window
    clock.now = START + 10  # it leaves the window: exactly one more
    assert await allowed(user, room)
    assert not await allowed(user, room)  # refused sends never counted, nor freed a place
    clock.now = START + 11  # the second leaves
    assert await allowed(user, room)
    assert not await allowed(user, room)
    if counter == "redis":
        assert ratelimit._local == {}  # counted in Redis, shared by every process


async def test_the_window_slides_so_no_bucket_edge_lets_twice_the_limit_through(
    counter, clock, settings
):
    settings.CHAT_RATE_LIMIT = (3, 10.0)
    user, room = new_id(), new_id()
    clock.now = START + 9.5  # the end of what would be a fixed 10 s bucket
    for _ in range(3):
        assert await allowed(user, room)
    clock.now = START + 10.5  # a new fixed bucket would allow three more here
    assert not await allowed(user, room)
    clock.now = START + 19.25
    assert not await allowed(user, room)
    clock.now = START + 19.5  # ten seconds after the three
    for _ in range(3):
        assert await allowed(user, room)
    assert not await allowed(user, room)


async def test_the_limit_is_per_user_per_room(counter, clock, settings):
    settings.CHAT_RATE_LIMIT = (2, 10.0)
    alice, bob, general, random_room = new_id(), new_id(), new_id(), new_id()
    assert await allowed(alice, general)
    assert await allowed(alice, general)
    assert not await allowed(alice, general)
    assert await allowed(alice, random_room)  # her other room has its own count
    assert await allowed(bob, general)  # and others in the same room theirs
    assert await allowed(bob, general)
    assert not await allowed(bob, general)
    assert await allowed(alice, random_room)
    assert not await allowed(alice, random_room)


async def test_no_limit_counts_nothing(counter, clock, settings):
    settings.CHAT_RATE_LIMIT = settings.CHAT_USER_RATE_LIMIT = None
    user, room = new_id(), new_id()
    for _ in range(100):
        assert await allowed(user, room)
    assert ratelimit._local == {}


async def test_redis_unreachable_falls_back_to_this_processs_count(
    settings, clock, fresh_local, caplog
):
    settings.CHAT_RATE_LIMIT = (2, 10.0)
    settings.CHAT_USER_RATE_LIMIT = None
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    user, other, room = new_id(), new_id(), new_id()
    with caplog.at_level(logging.WARNING, logger="chatrooms.ratelimit"):
        assert await allowed(user, room)  # not refused because Redis is down
        assert await allowed(user, room)
        assert not await allowed(user, room)  # still limited, by this process
        assert await allowed(other, room)  # per user, as on Redis
    assert set(ratelimit._local) == {(room, user), (room, other)}
    assert "rate limit falls back to this process" in caplog.text
    clock.now += 10  # the local window slides as Redis's does
    assert await allowed(user, room)


async def test_this_processs_idle_senders_are_forgotten(settings, clock, fresh_local):
    """Without Redis, a minute after their last message a sender's count is dropped."""
    settings.CHAT_RATE_LIMIT = (2, 10.0)
    settings.CHAT_USER_RATE_LIMIT = None
    settings.REDIS_URL = ""
    room, idle, busy = new_id(), new_id(), new_id()
    assert await allowed(idle, room)
    clock.now = START + 30
    assert await allowed(busy, room)
    clock.now = START + 55
    assert await allowed(busy, room)
    # Swept at most once a minute: idle for 55 s, still there.
    assert set(ratelimit._local) == {(room, idle), (room, busy)}
    clock.now = START + 61
    assert await allowed(busy, room)
    assert set(ratelimit._local) == {(room, busy)}
    assert len(ratelimit._local[(room, busy)]) == 2  # +55 and +61: the window kept


# --- CHAT_USER_RATE_LIMIT: per user across rooms, beside the per-room limit ------------


async def test_the_per_user_limit_counts_every_room(counter, clock, settings):
    settings.CHAT_RATE_LIMIT = (3, 10.0)
    settings.CHAT_USER_RATE_LIMIT = (5, 10.0)
    user, other, rooms = new_id(), new_id(), [new_id() for _ in range(3)]
    assert [await allowed(user, rooms[0]) for _ in range(4)] == [True] * 3 + [False]
    assert await allowed(user, rooms[1])
    assert await allowed(user, rooms[1])
    # 5 in 10 s across rooms: a third room, with a per-room count of 0, is refused too.
    assert not await allowed(user, rooms[2])
    assert await allowed(other, rooms[2])  # per user
    clock.now = START + 10  # the first five leave the window together
    assert await allowed(user, rooms[2])


async def test_a_refusal_by_either_window_counts_in_neither(counter, clock, settings):
    """All or nothing: a message the per-room window refuses is not counted
    against the user's total, and the other way round."""
    settings.CHAT_RATE_LIMIT = (2, 10.0)
    settings.CHAT_USER_RATE_LIMIT = (4, 10.0)
    user, busy, quiet, third = new_id(), new_id(), new_id(), new_id()
    assert await allowed(user, busy)
    assert await allowed(user, busy)
    for _ in range(5):  # refused by the room's window: the user's stays at 2
        assert not await allowed(user, busy)
    assert await allowed(user, quiet)
    assert await allowed(user, quiet)  # 4: the user's window is full
    for _ in range(3):  # refused by the user's window: the room's stays at 0
        assert not await allowed(user, third)
    settings.CHAT_USER_RATE_LIMIT = None  # so only the per-room count speaks
    assert await allowed(user, third)
    assert await allowed(user, third)
    assert not await allowed(user, third)


async def test_the_per_user_limit_alone_when_the_per_room_one_is_off(counter, clock, settings):
    settings.CHAT_RATE_LIMIT = None
    settings.CHAT_USER_RATE_LIMIT = (2, 10.0)
    user, room = new_id(), new_id()
    assert await allowed(user, room)
    assert await allowed(user, new_id())
    assert not await allowed(user, room)


@pytest.mark.redis
async def test_both_windows_are_one_redis_call_per_message(settings, clock, redis_url, monkeypatch):
    """The message path is benchmarked: one script call checks both windows,
    sent by its SHA1, and a Redis that lost its scripts (a restart) runs it again."""
    settings.REDIS_URL = redis_url
    settings.CHAT_RATE_LIMIT = (20, 10.0)
    settings.CHAT_USER_RATE_LIMIT = (30, 10.0)
    client, calls = get_redis(), []

    class Counting:
        def __getattr__(self, name):
            attribute = getattr(client, name)

            async def call(*args, **kwargs):
                calls.append(name)
                return await attribute(*args, **kwargs)

            return call

    monkeypatch.setattr(ratelimit, "get_redis", lambda: Counting())
    user, room = new_id(), new_id()
    assert await allowed(user, room)  # may load the script first
    calls.clear()
    assert await allowed(user, room)
    assert calls == ["evalsha"]
    await client.script_flush()  # what a restarted Redis knows of scripts
    calls.clear()
    assert await allowed(user, room)
    assert calls == ["evalsha", "eval"]
    assert await client.zcard(key("rl", room, user)) == 3
    assert await client.zcard(key("rl", "user", user)) == 3


# --- Other frames: a token bucket per socket -----------------------------------------


def test_frame_budget_is_a_burst_of_30_refilled_at_10_a_second(clock):
    budget = FrameBudget()
    assert all(budget.take() for _ in range(30))
    assert not budget.take()
    clock.now += 0.125  # a frame and a quarter's worth
    assert budget.take()
    assert not budget.take()
    clock.now += 0.375  # a quarter left, and 3.75 more: four frames
    assert [budget.take() for _ in range(5)] == [True] * 4 + [False]
    clock.now += 3600  # idle for an hour: still a burst of 30, not more
    assert sum(budget.take() for _ in range(40)) == 30


# --- Over the socket -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_rate_limit(layer, room, alice, bob, connect, settings):
    settings.CHAT_RATE_LIMIT = (3, 10.0)
    a, _ = await connect(alice, room)
    for n in range(3):
        await a.send({"type": "chat.message", "message": f"m{n}"})
        await a.recv_type("chat.message")
    await a.send({"type": "chat.message", "message": "one too many"})
    assert (await a.recv_type("error"))["code"] == "rate_limited"
    # Per user: bob in the same room is not limited by alice's sends.
    b, _ = await connect(bob, room)
    await b.send({"type": "chat.message", "message": "mine"})
    assert (await b.recv_type("chat.message"))["user"] == "bob"
    bodies = await database_sync_to_async(
        lambda: list(Message.objects.values_list("body", flat=True))
    )()
    assert "one too many" not in bodies and len(bodies) == 4


@pytest.mark.django_db(transaction=True)
async def test_rate_limit_default_is_20_per_10_seconds(layer, room, alice, connect):
    a, _ = await connect(alice, room)
    for n in range(20):
        await a.send({"type": "chat.message", "message": f"m{n}"})
    for _ in range(20):
        await a.recv_type("chat.message")
    await a.send({"type": "chat.message", "message": "21st"})
    assert (await a.recv_type("error"))["code"] == "rate_limited"


@pytest.mark.django_db(transaction=True)
async def test_rate_limit_off(layer, room, alice, connect, settings):
    settings.CHAT_RATE_LIMIT = None
    a, _ = await connect(alice, room)
    for n in range(25):
        await a.send({"type": "chat.message", "message": f"m{n}"})
    for _ in range(25):
        await a.recv_type("chat.message")
    assert await database_sync_to_async(Message.objects.count)() == 25


@pytest.mark.django_db(transaction=True)
async def test_the_per_user_limit_spans_the_users_rooms_over_sockets(
    layer, room_factory, alice, bob, connect, settings
):
    settings.CHAT_RATE_LIMIT = (3, 10.0)
    settings.CHAT_USER_RATE_LIMIT = (4, 10.0)
    make = database_sync_to_async(room_factory)
    general = await make("General", owner=alice, slug="general", members=[bob])
    random_room = await make("Random", owner=alice, slug="random")
    a, _ = await connect(alice, general)
    r, _ = await connect(alice, random_room)
    for n in range(3):
        await a.send({"type": "chat.message", "message": f"g{n}"})
        await a.recv_type("chat.message")
    await r.send({"type": "chat.message", "message": "r0"})
    await r.recv_type("chat.message")
    await r.send({"type": "chat.message", "message": "over"})  # 5th in 10 s, 2nd in this room
    assert (await r.recv_type("error"))["code"] == "rate_limited"
    b, _ = await connect(bob, general)  # bob has counts of his own
    await b.send({"type": "chat.message", "message": "bob's"})
    assert (await b.recv_type("chat.message"))["user"] == "bob"
    bodies = await database_sync_to_async(
        lambda: sorted(Message.objects.values_list("body", flat=True))
    )()
    assert bodies == ["bob's", "g0", "g1", "g2", "r0"]  # nothing stored past the limit


@pytest.mark.django_db(transaction=True)
async def test_other_frames_have_a_burst_budget(layer, room, alice, connect):
    a, _ = await connect(alice, room)
    for _ in range(40):
        await a.send({"type": "ping"})
    kinds = [(await a.recv())["type"] for _ in range(40)]
    assert kinds.count("pong") >= 30
    assert "error" in kinds
