"""chatrooms/access.py: connects without the database, and a cache that never
outlives what ends it.

Each test sets CHAT_CONNECT_CACHE_SECONDS to an hour, so that a refusal
after a sign-out, kick, ban, deactivation, password change or archiving
proves the event dropped the entry at once, not its age. On Redis a user's
first socket in a process caches nothing (its channel was not heard before
the read); the second one caches; on the in-memory layer the first does.
"""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse

from accounts import services as accounts_services
from chatrooms import access, selectors, services
from chatrooms.access import connect_cache
from chatrooms.hub import hub
from tests.chatrooms.conftest import eventually, open_socket

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
async def _long_lived_cache(settings):
    settings.CHAT_CONNECT_CACHE_SECONDS = 3600
    # The hub starts afresh (caches dropped) on each test's new event loop:
    # now, not in the middle of the test's first connect.
    hub._on_loop()


@pytest.fixture
def reads(monkeypatch):
    """Count the connects that read the database, and hello histories read from it."""
    counts = {"connect": 0, "history": 0}
    real_read, real_history = access.connect_read, selectors.message_history

    def counting_read(**kwargs):
        counts["connect"] += 1
        return real_read(**kwargs)

    def counting_history(**kwargs):
        counts["history"] += 1
        return real_history(**kwargs)

    monkeypatch.setattr(access, "connect_read", counting_read)
    monkeypatch.setattr(selectors, "message_history", counting_history)
    return counts


async def browser(user) -> str:
    """A signed-in browser session of `user`: its session key."""

    def sign_in():
        client = Client()
        client.force_login(user)
        return client

    client = await database_sync_to_async(sign_in)()
    return client.cookies["sessionid"].value


async def warm(connect, user, room, key, layer) -> list:
    """Open sockets until the next one of `user` in `room` needs no database."""
    sockets = []
    for _ in range(2 if layer == "redis" else 1):
        sock, _ = await connect(user, room, cookie=key)
        sockets.append(sock)
    assert connect_cache.user(key) is not None
    assert connect_cache.access(user.id, room.slug) is not None
    return sockets


async def closed(sock, reason: str) -> None:
    assert (await sock.recv_type("closed", timeout=5)) == {"type": "closed", "reason": reason}
    assert (await sock.communicator.receive_output(timeout=3)) == {
        "type": "websocket.close",
        "code": 4403,
    }


# --- Connects without the database ----------------------------------------------------


@pytest.mark.parametrize("layer", ["redis"], indirect=True)  # hello's ring: Redis only
async def test_a_warm_connect_reads_nothing_from_the_database(
    layer, room, alice, connect, reads, message_factory
):
    await database_sync_to_async(message_factory)(room, alice, "hello there")
    key = await browser(alice)
    first, first_hello = await connect(alice, room, cookie=key)
    second, second_hello = await connect(alice, room, cookie=key)
    before = dict(reads)
    third, hello = await connect(alice, room, cookie=key)
    assert reads == before  # no session, user, room, membership or history read
    assert [m["message"] for m in hello["messages"]] == ["hello there"]
    for other in (first_hello, second_hello):
        assert {**hello, "online": None} == {**other, "online": None}
    await third.send({"type": "chat.message", "message": "from a cached socket"})
    assert (await first.recv_type("chat.message"))["message"] == "from a cached socket"


@pytest.mark.parametrize("layer", ["redis"], indirect=True)  # hello's ring: Redis only
async def test_the_users_other_rooms_come_with_the_first_cached_read(
    layer, room_factory, room, alice, bob, connect, reads
):
    """One read keeps all of a user's memberships: their sockets in other rooms
    need only the room's facts, which another socket of that room cached."""
    lounge = await database_sync_to_async(room_factory)("Lounge", owner=bob, members=[alice])
    await warm(connect, bob, lounge, await browser(bob), layer)
    key = await browser(alice)
    await warm(connect, alice, room, key, layer)
    before = dict(reads)
    _, hello = await connect(alice, lounge, cookie=key)
    assert hello["room"]["slug"] == lounge.slug
    assert reads == before


async def test_sockets_of_one_session_opening_together_share_one_read(
    layer, room_factory, alice, connect, reads
):
    """A browser restoring its tabs, or a reconnect storm: one read per session."""
    import asyncio

    rooms = [await database_sync_to_async(room_factory)(f"Tab {n}", owner=alice) for n in range(6)]
    key = await browser(alice)
    opened = await asyncio.gather(*(connect(alice, room, cookie=key) for room in rooms))
    assert [hello["room"]["slug"] for _, hello in opened] == [room.slug for room in rooms]
    assert reads["connect"] == 1


async def test_a_storm_of_sessions_is_read_in_a_few_hops_each_with_its_own_answer(
    layer, room_factory, user_factory, connect, monkeypatch
):
    """Connects that miss the cache at once wait together for one database hop
    (access.GroupRead): sessions, users and memberships each in one query for
    all of them; and every socket still gets exactly its own answer."""
    import asyncio

    owner = await database_sync_to_async(user_factory)()
    public = await database_sync_to_async(room_factory)("Open", owner=owner)
    members = [await database_sync_to_async(user_factory)() for _ in range(8)]
    private = await database_sync_to_async(room_factory)(
        "Closed", owner=owner, is_private=True, members=members[:4]
    )
    outsider = await database_sync_to_async(user_factory)(is_active=True)
    gone = await database_sync_to_async(user_factory)()
    keys = {user.pk: await browser(user) for user in [*members, outsider, gone]}
    await database_sync_to_async(type(gone).objects.filter(pk=gone.pk).update)(is_active=False)
    hops = []
    real = access.connect_reads

    def counting(requests):
        hops.append(len(requests))
        return real(requests)

    monkeypatch.setattr(access, "connect_reads", counting)

    async def attempt(user, room):
        accepted, sock = await open_socket(user, room.slug, cookie=keys[user.pk])
        if not accepted:
            return None
        hello = await sock.recv_type("hello")
        await sock.communicator.disconnect()
        return hello

    plan = [(user, private) for user in members] + [
        (user, public) for user in [*members, outsider, gone]
    ]
    hellos = await asyncio.gather(*(attempt(user, room) for user, room in plan))
    for (user, room), hello in zip(plan, hellos, strict=True):
        may_enter = user.is_active and user is not gone and (room is public or user in members[:4])
        if not may_enter:
            assert hello is None, (user.username, room.slug)
            continue
        assert hello["room"]["slug"] == room.slug
        assert hello["user"]["username"] == user.username
    # A session's second socket reads only a room the first read did not cover
    # (here: joining the public room), and all of them go in a few hops.
    assert len({user.pk for user, _ in plan}) <= sum(hops) <= len(plan)
    assert len(hops) <= 3, hops
    # Joining the public room on connect stored the membership, once each.
    joined = await database_sync_to_async(
        lambda: set(public.memberships.values_list("user_id", flat=True))
    )()
    assert joined == {owner.pk, outsider.pk, *(m.pk for m in members)}


async def test_a_connect_that_fails_in_a_shared_hop_fails_alone(
    layer, room, user_factory, connect, monkeypatch
):
    """One connect's error in a shared hop (here: joining the public room, for
    one newcomer) closes that socket only, with the code that says whether to
    come back; the others of the hop get their hello."""
    import asyncio

    from django.db.utils import OperationalError

    people = [await database_sync_to_async(user_factory)() for _ in range(4)]
    unlucky = people[1]
    keys = {user.pk: await browser(user) for user in people}
    real = services.room_enter

    def room_enter(*, user, slug):
        if user.pk == unlucky.pk:
            raise OperationalError("connection refused")
        return real(user=user, slug=slug)

    monkeypatch.setattr(services, "room_enter", room_enter)

    async def attempt(user):
        accepted, sock = await open_socket(user, room.slug, cookie=keys[user.pk])
        assert accepted
        output = await sock.communicator.receive_output(timeout=5)
        await sock.communicator.disconnect()
        return output

    outputs = await asyncio.gather(*(attempt(user) for user in people))
    for user, output in zip(people, outputs, strict=True):
        if user is unlucky:
            assert output == {"type": "websocket.close", "code": 1013}
        else:
            assert json.loads(output["text"])["type"] == "hello"


async def test_a_session_is_not_trusted_before_its_users_channel_is_heard(
    settings, room, alice, connect, reads, redis_url
):
    """On Redis a read made before the user's channel was subscribed could miss
    a sign-out published in between: it serves its socket and is not kept."""
    settings.REDIS_URL = redis_url
    key = await browser(alice)
    await connect(alice, room, cookie=key)
    assert connect_cache.user(key) is None
    await connect(alice, room, cookie=key)
    assert connect_cache.user(key) is not None
    assert reads["connect"] == 2


async def test_off_when_the_lifetime_is_zero(layer, room, alice, connect, reads, settings):
    settings.CHAT_CONNECT_CACHE_SECONDS = 0
    key = await browser(alice)
    for _ in range(3):
        await connect(alice, room, cookie=key)
    assert reads == {"connect": 3, "history": 3}
    assert connect_cache.user(key) is None
    assert room.id not in hub.recent


# --- What ends a session or an access ends the cached one, at once ---------------------------


async def test_sign_out_refuses_a_reconnect_at_once(layer, room, alice, connect):
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    key = client.cookies["sessionid"].value
    sockets = await warm(connect, alice, room, key, layer)
    response = await database_sync_to_async(client.post)(reverse("account_logout"))
    assert response.status_code == 302
    for sock in sockets:
        await closed(sock, "signed_out")
    assert connect_cache.user(key) is None
    accepted, _ = await open_socket(alice, room.slug, cookie=key)
    assert not accepted


async def test_kick_from_a_private_room_refuses_a_reconnect_at_once(
    layer, room_factory, alice, bob, connect
):
    secret = await database_sync_to_async(room_factory)(
        "Secret", owner=alice, members=[bob], is_private=True
    )
    key = await browser(bob)
    sockets = await warm(connect, bob, secret, key, layer)
    await database_sync_to_async(services.member_kick)(user=alice, room=secret, user_id=bob.id)
    for sock in sockets:
        await closed(sock, "kicked")
    accepted, _ = await open_socket(bob, secret.slug, cookie=key)
    assert not accepted


async def test_ban_refuses_a_reconnect_at_once(layer, room, alice, bob, connect):
    key = await browser(bob)
    sockets = await warm(connect, bob, room, key, layer)
    await database_sync_to_async(services.member_ban)(user=alice, room=room, user_id=bob.id)
    for sock in sockets:
        await closed(sock, "banned")
    accepted, _ = await open_socket(bob, room.slug, cookie=key)
    assert not accepted


async def test_leaving_refuses_a_reconnect_to_a_private_room_at_once(
    layer, room_factory, alice, bob, connect
):
    secret = await database_sync_to_async(room_factory)(
        "Secret", owner=alice, members=[bob], is_private=True
    )
    key = await browser(bob)
    sockets = await warm(connect, bob, secret, key, layer)
    await database_sync_to_async(services.member_leave)(user=bob, room=secret)
    for sock in sockets:
        await closed(sock, "left")
    accepted, _ = await open_socket(bob, secret.slug, cookie=key)
    assert not accepted


async def test_deactivation_refuses_a_reconnect_at_once(layer, room, bob, connect):
    key = await browser(bob)
    sockets = await warm(connect, bob, room, key, layer)
    await database_sync_to_async(accounts_services.user_set_active)(user=bob, active=False)
    for sock in sockets:
        await closed(sock, "deactivated")
    accepted, _ = await open_socket(bob, room.slug, cookie=key)
    assert not accepted


async def test_a_password_change_refuses_the_old_sessions_at_once(layer, room, bob, connect):
    key = await browser(bob)
    sockets = await warm(connect, bob, room, key, layer)

    def change_password():
        bob.set_password("a-brand-new-passphrase-7")
        bob.save()

    await database_sync_to_async(change_password)()
    for sock in sockets:
        await closed(sock, "password_changed")
    accepted, _ = await open_socket(bob, room.slug, cookie=key)
    assert not accepted


async def test_archiving_refuses_a_reconnect_at_once(layer, room, alice, bob, connect):
    key = await browser(bob)
    sockets = await warm(connect, bob, room, key, layer)
    await database_sync_to_async(services.room_set_archived)(user=alice, room=room, archived=True)
    for sock in sockets:
        await closed(sock, "archived")
    accepted, _ = await open_socket(bob, room.slug, cookie=key)
    assert not accepted


async def test_a_rename_reaches_the_next_hello(layer, room, alice, connect):
    key = await browser(alice)
    sockets = await warm(connect, alice, room, key, layer)
    await database_sync_to_async(services.room_update)(
        user=alice, room=room, name="Renamed", topic="New topic"
    )
    assert (await sockets[0].recv_type("room"))["room"]["name"] == "Renamed"
    _, hello = await connect(alice, room, cookie=key)
    assert (hello["room"]["name"], hello["room"]["topic"]) == ("Renamed", "New topic")


async def test_a_role_change_drops_the_users_cached_access(layer, room, alice, bob, connect):
    key = await browser(bob)
    await warm(connect, bob, room, key, layer)
    assert connect_cache.access(bob.id, room.slug).role == "member"
    await database_sync_to_async(services.member_set_role)(
        user=alice, room=room, user_id=bob.id, role="moderator"
    )
    await eventually(lambda: connect_cache.access(bob.id, room.slug) is None, what="dropped")
    await connect(bob, room, cookie=key)
    if layer == "memory":  # on Redis the read after an event is kept from the next one on
        assert connect_cache.access(bob.id, room.slug).role == "moderator"


async def test_a_new_display_name_reaches_the_next_hello(layer, room, bob, connect):
    key = await browser(bob)
    await warm(connect, bob, room, key, layer)
    await database_sync_to_async(accounts_services.user_update_profile)(
        user=bob, display_name="Robert"
    )
    await eventually(lambda: connect_cache.user(key) is None, what="bob dropped")
    _, hello = await connect(bob, room, cookie=key)
    assert hello["user"] == {"username": "bob", "display_name": "Robert"}
    assert hello["names"]["bob"] == "Robert"


async def test_a_read_marker_moved_here_reaches_the_next_hello(
    layer, room, alice, connect, message_factory
):
    message = await database_sync_to_async(message_factory)(room, alice, "read me")
    key = await browser(alice)
    sockets = await warm(connect, alice, room, key, layer)
    await sockets[0].send({"type": "read", "id": message.id})
    await sockets[0].send({"type": "ping"})
    await sockets[0].recv_type("pong")
    await eventually(
        lambda: connect_cache.access(alice.id, room.slug).last_read_id == message.id,
        what="the marker noted",
    )
    _, hello = await connect(alice, room, cookie=key)
    assert hello["last_read"] == message.id


@pytest.mark.parametrize("layer", ["redis"], indirect=True)  # hello's ring: Redis only
async def test_a_broken_link_drops_every_cache(layer, room, alice, connect):
    key = await browser(alice)
    sockets = await warm(connect, alice, room, key, layer)
    assert room.id in hub.recent
    hub._lost()  # what the supervisor does when the Redis link dies
    assert connect_cache.user(key) is None
    assert not connect_cache.rooms and not connect_cache.users
    assert not hub.recent
    for sock in sockets:
        assert (await sock.communicator.receive_output(timeout=3))["type"] in {
            "websocket.send",
            "websocket.close",
        }


async def test_the_cache_is_bounded(layer, room_factory, user_factory, connect, settings):
    settings.CHAT_CONNECT_CACHE_SIZE = 2
    for _ in range(4):
        person = await database_sync_to_async(user_factory)()
        home = await database_sync_to_async(room_factory)(owner=person)
        await warm(connect, person, home, await browser(person), layer)
    assert len(connect_cache.sessions) <= 2
    assert len(connect_cache.users) <= 2
    assert len(connect_cache.rooms) <= 2
