"""Per-user caps: CHAT_MAX_SOCKETS_PER_USER (chatrooms/presence.py, the consumer),
CHAT_ROOM_CREATE_RATE and CHAT_INVITE_CREATE_RATE (the services and their pages).

The socket cap counts a user's sockets in every room and on every process:
in Redis, one sorted set per user scored by expiry and refreshed by the
presence keep-alive, so a dead process's sockets stop counting; in memory
without Redis. The socket over it is accepted, told `closed`
"too_many_sockets" and closed with 4429. CHAT_USER_RATE_LIMIT (messages
across rooms) is in test_ratelimit.py. The message limits' message-path
counterpart is tests/js/connection.test.js for the browser's side of 4429.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import types
import uuid

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse

from chatrooms import presence, ratelimit, services
from chatrooms.models import Invite, Room
from chatrooms.presence import Conn, RedisPresence, TooManySockets, Tracker
from chatrooms.redis import get_redis
from tests.chatrooms.conftest import open_socket, session_cookie
from tests.live import Browserless, fresh_database, recv_json, server_env, servers_running
from tests.project.test_settings import PRINT_SETTINGS, run_python

_ids = itertools.count(5_000_000_000)  # users and rooms of the store tests, far from the db's


def new_id() -> int:
    return next(_ids)


def tab(user_id: int, room_id: int, n: int) -> Conn:
    """The n-th socket of user `user_id` in the room (as the consumer makes them)."""
    return Conn(f"u{user_id}-r{room_id}-{n}", room_id, f"user{user_id}", "", user_id)


@pytest.fixture
def shared(settings, redis_url):
    settings.REDIS_URL = redis_url
    return RedisPresence()


@pytest.fixture
def clock(monkeypatch):
    """presence's time.time(), moved by hand: expiry without waiting for it."""
    clock = types.SimpleNamespace(now=1_000_000.0)
    monkeypatch.setattr(presence, "time", types.SimpleNamespace(time=lambda: clock.now))
    return clock


# --- The socket cap, in the stores ------------------------------------------------------


async def test_the_cap_counts_a_users_sockets_in_every_room(store, settings):
    settings.CHAT_MAX_SOCKETS_PER_USER = 3
    user, other, general, random_room = new_id(), new_id(), new_id(), new_id()
    await store.join_listing(tab(user, general, 1))
    await store.join_listing(tab(user, general, 2))
    await store.join_listing(tab(user, random_room, 1))  # another room counts too
    with pytest.raises(TooManySockets):
        await store.join_listing(tab(user, random_room, 2))
    assert await store.online(random_room) == [f"user{user}"]  # the refused one joined nothing
    for n in (1, 2, 3):  # another user has a cap of their own
        await store.join_listing(tab(other, random_room, n))
    await store.leave(tab(user, general, 1))  # closing a socket frees its slot at once
    await store.join_listing(tab(user, random_room, 2))
    with pytest.raises(TooManySockets):
        await store.join_listing(tab(user, general, 3))


async def test_no_cap_with_0_or_without_a_user(store, settings):
    settings.CHAT_MAX_SOCKETS_PER_USER = 0
    user, room = new_id(), new_id()
    for n in range(40):
        await store.join_listing(tab(user, room, n))
    settings.CHAT_MAX_SOCKETS_PER_USER = 1
    for n in range(3):  # a Conn without a user id is counted under nobody's cap
        await store.join_listing(Conn(f"anon-{room}-{n}", room, "anon"))


@pytest.mark.redis
async def test_a_burst_of_joins_takes_exactly_the_cap(shared, settings):
    """The count and the slot are one atomic script: 100 joins at once, 30 win."""
    settings.CHAT_MAX_SOCKETS_PER_USER = 30
    user, rooms = new_id(), [new_id(), new_id()]
    results = await asyncio.gather(
        *(shared.join_listing(tab(user, rooms[n % 2], n)) for n in range(100)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, TooManySockets)]
    assert len(refused) == 70 and len(results) - len(refused) == 30
    counted = await get_redis().zcard(presence._sockets_key(user))
    assert counted == 30


@pytest.mark.redis
async def test_processes_share_the_count_and_a_dead_ones_sockets_expire(shared, clock, settings):
    """Two processes' sockets count together; a killed process never says `leave`,
    and its sockets stop counting CHAT_PRESENCE_TIMEOUT after their last refresh,
    while the keep-alive of a live process keeps its own counted."""
    settings.CHAT_MAX_SOCKETS_PER_USER = 3
    settings.CHAT_PRESENCE_TIMEOUT = 30
    user, room, other_room = new_id(), new_id(), new_id()
    killed = RedisPresence()  # another process, about to die: nobody refreshes its sockets
    await killed.join_listing(tab(user, other_room, 1))
    await killed.join_listing(tab(user, other_room, 2))
    here = Tracker()
    await here.join_listing(tab(user, room, 1))
    try:
        with pytest.raises(TooManySockets):  # 3 open, on two processes
            await here.join_listing(tab(user, room, 2))
        assert tab(user, room, 2).conn_id not in here.conns  # not kept alive either
        clock.now += 20
        await here.refresh()  # the keep-alive: this process's one socket, renewed
        clock.now += 11  # 31 s after the dead process's last word
        await here.join_listing(tab(user, room, 2))
        await here.join_listing(tab(user, room, 3))
        with pytest.raises(TooManySockets):  # the renewed one still counts
            await here.join_listing(tab(user, room, 4))
    finally:
        for n in (1, 2, 3):
            here.forget(tab(user, room, n))
        if here._task is not None:
            here._task.cancel()


# --- The socket cap, over sockets ----------------------------------------------------


async def first_frame(sock) -> dict:
    return await sock.recv(timeout=10)


@pytest.mark.django_db(transaction=True)
async def test_a_burst_of_100_connects_leaves_exactly_the_cap_open(layer, room, alice, settings):
    """100 sockets of one user at once, cap 30: 30 hellos; 70 `closed` too_many_sockets
    and close 4429. Closing one frees its slot for the next at once."""
    settings.CHAT_MAX_SOCKETS_PER_USER = 30
    cookie = await database_sync_to_async(session_cookie)(alice)
    opened = await asyncio.gather(
        *(open_socket(alice, room.slug, cookie=cookie) for _ in range(100))
    )
    assert all(accepted for accepted, _ in opened)  # accepted, then told why and closed
    sockets = [sock for _, sock in opened]
    firsts = await asyncio.gather(*(first_frame(sock) for sock in sockets))
    kept = [sock for sock, frame in zip(sockets, firsts, strict=True) if frame["type"] == "hello"]
    refused = [
        sock for sock, frame in zip(sockets, firsts, strict=True) if frame["type"] != "hello"
    ]
    try:
        assert len(kept) == 30 and len(refused) == 70
        assert {f["type"] for f in firsts} == {"hello", "closed"}
        assert {f.get("reason") for f in firsts if f["type"] == "closed"} == {"too_many_sockets"}
        for sock in refused:
            close = await sock.communicator.receive_output(timeout=5)
            assert close == {"type": "websocket.close", "code": 4429, "reason": "too_many_sockets"}
        for sock in refused:
            await sock.close()
        accepted, extra = await open_socket(alice, room.slug, cookie=cookie)
        assert (await first_frame(extra))["type"] == "closed"  # still 30 open
        await extra.close()
        await kept.pop().close()  # one closes: its slot is free now, not after a timeout
        accepted, again = await open_socket(alice, room.slug, cookie=cookie)
        kept.append(again)
        assert (await first_frame(again))["type"] == "hello"
    finally:
        for sock in kept:
            await sock.close()


@pytest.mark.django_db(transaction=True)
async def test_the_cap_spans_rooms_and_spares_other_users(
    layer, room_factory, alice, bob, connect, settings
):
    settings.CHAT_MAX_SOCKETS_PER_USER = 2
    make = database_sync_to_async(room_factory)
    general = await make("General", owner=alice, slug="general", members=[bob])
    random_room = await make("Random", owner=alice, slug="random")
    first, _ = await connect(alice, general)
    await connect(alice, random_room)
    accepted, third = await open_socket(alice, "general")
    assert accepted and await third.recv() == {"type": "closed", "reason": "too_many_sockets"}
    out = await third.communicator.receive_output(timeout=5)
    assert (out["code"], out["reason"]) == (4429, "too_many_sockets")
    await third.close()
    await connect(bob, general)  # bob's sockets are his own count
    await first.close()
    again, hello = await connect(alice, general)
    assert hello["room"]["slug"] == "general"


@pytest.fixture
def cluster(tmp_path, redis_url):
    """Two uvicorn processes sharing the database and Redis, a cap of 3 and a short
    presence timeout (its minimum, 5 s: the production default is 30)."""
    prefix = f"chat-caps-{uuid.uuid4().hex[:10]}"
    with fresh_database(tmp_path) as url:
        env = server_env(
            url, redis_url, prefix, CHAT_MAX_SOCKETS_PER_USER="3", CHAT_PRESENCE_TIMEOUT="5"
        )
        with servers_running(env, tmp_path, kind="uvicorn") as servers:
            yield servers


async def test_real_processes_share_the_cap_and_a_killed_ones_sockets_stop_counting(cluster):
    import websockets

    first, second = cluster
    alice = Browserless(first).sign_up("alice")
    alice.post_form("/chats/enter/", {"name": "Ops"})
    there = alice.moved_to(second)
    open_ = [await alice.socket("ops"), await alice.socket("ops"), await there.socket("ops")]
    try:
        for ws in open_:
            await recv_json(ws, "hello")
        over = await there.socket("ops")  # the 4th, on the process that has only one
        assert await recv_json(over) == {"type": "closed", "reason": "too_many_sockets"}
        with pytest.raises(websockets.ConnectionClosed):
            await over.recv()
        assert (over.close_code, over.close_reason) == (4429, "too_many_sockets")
        cluster[0].kill()  # no disconnect runs: its two sockets are only forgotten
        deadline = time.monotonic() + 30  # a bound for a slow machine, not a speed claim
        while True:
            ws = await there.socket("ops")
            if (await recv_json(ws))["type"] == "hello":
                open_.append(ws)
                break
            await ws.close()
            assert time.monotonic() < deadline, "the killed process's sockets still count"
            await asyncio.sleep(0.5)
        open_.append(await there.socket("ops"))
        assert (await recv_json(open_[-1]))["type"] == "hello"  # 3 again: 1 + these 2
        last = await there.socket("ops")
        assert (await recv_json(last))["reason"] == "too_many_sockets"
        await last.close()
    finally:
        for ws in open_:
            await ws.close()


# --- Room and invite creation ----------------------------------------------------------


@pytest.fixture
def hand_clock(monkeypatch):
    """ratelimit's clock, moved by hand."""
    clock = types.SimpleNamespace(now=2_000_000.0)
    clock.time = lambda: clock.now
    monkeypatch.setattr(ratelimit, "time", clock)
    return clock


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
def counter(request, settings):
    """Each creation test twice: counted in this process, then in Redis."""
    settings.REDIS_URL = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    return request.param


@pytest.mark.django_db
def test_room_creation_is_limited_per_user_and_the_window_slides(
    counter, hand_clock, settings, alice, bob
):
    settings.CHAT_ROOM_CREATE_RATE = (2, 3600.0)
    services.room_create(user=alice, name="One")
    hand_clock.now += 60
    services.room_get_or_create_by_name(user=alice, name="Two")  # the lobby's box creates too
    with pytest.raises(services.ServiceError) as refused:
        services.room_create(user=alice, name="Three")
    assert refused.value.code == "rate_limited"
    assert "at most 2 per hour" in refused.value.detail
    with pytest.raises(services.ServiceError):
        services.room_get_or_create_by_name(user=alice, name="Four")
    # Entering an existing room creates nothing and is never limited.
    assert services.room_get_or_create_by_name(user=alice, name="one").name == "One"
    services.room_create(user=bob, name="Bobs")  # per user
    assert sorted(Room.objects.values_list("name", flat=True)) == ["Bobs", "One", "Two"]
    hand_clock.now += 3540  # an hour after the first: one more, not two
    services.room_create(user=alice, name="Five")
    with pytest.raises(services.ServiceError):
        services.room_create(user=alice, name="Six")
    if counter == "redis":
        assert ratelimit._local == {}  # counted in Redis, shared by every process


@pytest.mark.django_db
def test_staff_are_limited_too_and_0_turns_it_off(counter, settings, user_factory):
    admin = user_factory(is_staff=True, is_superuser=True)
    settings.CHAT_ROOM_CREATE_RATE = (1, 3600.0)
    services.room_create(user=admin, name="Ops")
    with pytest.raises(services.ServiceError):
        services.room_create(user=admin, name="Ops 2")
    settings.CHAT_ROOM_CREATE_RATE = None
    for n in range(12):
        services.room_create(user=admin, name=f"Free {n}")


@pytest.mark.django_db
def test_invite_creation_is_limited_per_user_and_refusals_cost_nothing(
    counter, settings, alice, bob, room_factory
):
    settings.CHAT_INVITE_CREATE_RATE = (2, 3600.0)
    room = room_factory(owner=alice, members=[bob])
    for _ in range(3):  # refused for other reasons: not counted
        with pytest.raises(services.ServiceError) as refused:
            services.invite_create(user=alice, room=room, lifetime="forever")
        assert refused.value.code == "bad_frame"
    services.invite_create(user=alice, room=room)
    services.invite_create(user=alice, room=room, lifetime="1h")
    with pytest.raises(services.ServiceError) as refused:
        services.invite_create(user=alice, room=room)
    assert refused.value.code == "rate_limited"
    assert "invite links too fast" in refused.value.detail
    assert Invite.objects.count() == 2


# --- The pages say so -----------------------------------------------------------------


@pytest.mark.django_db
def test_the_lobby_forms_show_the_limit_as_a_form_error(client, settings, alice):
    settings.CHAT_ROOM_CREATE_RATE = (1, 3600.0)
    client.force_login(alice)
    assert client.post(reverse("chatrooms:room_create"), {"name": "First"}).status_code == 302
    response = client.post(reverse("chatrooms:room_create"), {"name": "Second"})
    assert response.status_code == 429
    assert "You are creating rooms too fast" in response.content.decode()
    assert response.context["create_form"].non_field_errors()
    response = client.post(reverse("chatrooms:room_enter"), {"name": "Third"})
    assert response.status_code == 429
    assert "You are creating rooms too fast" in response.context["enter_form"].errors["name"][0]
    assert "You are creating rooms too fast" in response.content.decode()
    # The box still enters an existing room.
    response = client.post(reverse("chatrooms:room_enter"), {"name": "First"})
    assert response.status_code == 302
    assert list(Room.objects.values_list("name", flat=True)) == ["First"]


@pytest.mark.django_db
def test_the_settings_page_shows_the_invite_limit(client, settings, alice, room_factory):
    settings.CHAT_INVITE_CREATE_RATE = (1, 3600.0)
    room = room_factory(owner=alice)
    client.force_login(alice)
    url = reverse("chatrooms:room_settings", args=[room.slug])
    data = {"action": "invite", "lifetime": "7d", "max_uses": ""}
    assert client.post(url, data).status_code == 302
    response = client.post(url, data)
    assert response.status_code == 429
    assert "You are creating invite links too fast" in response.content.decode()
    assert Invite.objects.count() == 1


# --- Settings ---------------------------------------------------------------------------


def test_the_caps_have_sane_defaults_and_bad_values_name_their_variable():
    code = PRINT_SETTINGS + (
        "from django.conf import settings as s\n"
        "print(json.dumps([s.CHAT_MAX_SOCKETS_PER_USER, s.CHAT_ROOM_CREATE_RATE,"
        " s.CHAT_INVITE_CREATE_RATE, s.CHAT_USER_RATE_LIMIT]))\n"
    )
    clear = dict.fromkeys(
        [
            "CHAT_MAX_SOCKETS_PER_USER",
            "CHAT_ROOM_CREATE_RATE",
            "CHAT_INVITE_CREATE_RATE",
            "CHAT_USER_RATE_LIMIT",
        ],
        "",
    )
    result = run_python(code, **clear)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[30, [10, 3600.0], [30, 3600.0], [30, 10.0]]"
    off = run_python(
        code,
        CHAT_MAX_SOCKETS_PER_USER="0",
        CHAT_ROOM_CREATE_RATE="0",
        CHAT_INVITE_CREATE_RATE="0",
        CHAT_USER_RATE_LIMIT="0",
    )
    assert off.stdout.strip().splitlines()[-1] == "[0, null, null, null]"
    for variable, value in [
        ("CHAT_MAX_SOCKETS_PER_USER", "-1"),
        ("CHAT_ROOM_CREATE_RATE", "lots"),
        ("CHAT_INVITE_CREATE_RATE", "5/week"),
        ("CHAT_USER_RATE_LIMIT", "0/10s"),
    ]:
        result = run_python(PRINT_SETTINGS, **{variable: value})
        assert result.returncode != 0
        assert f"ImproperlyConfigured: {variable}=" in result.stderr
