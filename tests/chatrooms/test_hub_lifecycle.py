"""The hub's Redis subscription life cycle (chatrooms/hub.py, docs/reliability.md):
every transition, against a redis-server of our own that the tests kill and
start again, and a TCP proxy that makes the link go silent.

    link:          idle -> connecting -> up -> down -> connecting -> ...
    subscription:  subscribing -> subscribed -> lost -> resubscribing -> subscribed
                   (subscribing | lost | resubscribing) -> failed -> resubscribing
"""

from __future__ import annotations

import asyncio
import time

import pytest

from chatrooms import hub as hub_module
from chatrooms import protocol
from chatrooms.hub import (
    FAILED,
    LOST,
    SUBSCRIBED,
    SUBSCRIBING,
    Hub,
    HubUnavailable,
    Outbox,
    Subscription,
)
from tests.chatrooms.test_hub import FakeSocket
from tests.faults import TcpProxy, own_redis  # noqa: F401

pytestmark = pytest.mark.redis


async def until(check, timeout: float = 10.0, step: float = 0.05):  # noqa: ASYNC109
    """Wait for `check()` to be true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(step)


def closed_with(socket: FakeSocket) -> int | None:
    closes = [m["code"] for m in socket.sent if m["type"] == "websocket.close"]
    return closes[-1] if closes else None


def no_leftovers(hub: Hub) -> None:
    """Nothing outlives the sockets: no table entry, no pending future."""
    assert hub.rooms == {} and hub.users == {}
    assert hub.subscriptions == {}


@pytest.fixture
async def make_hub(settings):
    hubs = []

    def make(url: str) -> Hub:
        settings.REDIS_URL = url
        hub = Hub()
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        await hub.close()


async def joined(hub: Hub, room_id: int, conn_id: str) -> tuple[FakeSocket, Outbox]:
    socket = FakeSocket()
    box = Outbox(socket.send, room_id)
    await hub.join(room_id, conn_id, box)
    box.release("hello", 0)
    return socket, box


async def joined_once_redis_answers(
    hub: Hub, room_id: int, conn_id: str, within: float = 10.0
) -> FakeSocket:
    """Join as a reconnecting client would: refused while Redis is away, then in.

    Fails when the room is still refused `within` seconds after Redis came back.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            return (await joined(hub, room_id, conn_id))[0]
        except HubUnavailable:
            await hub.leave(room_id, conn_id)  # the refused socket's cleanup
            assert time.monotonic() < deadline, "the room stayed dead after Redis came back"
            await asyncio.sleep(0.2)


async def test_subscribing_then_subscribed_then_idle(make_hub, own_redis):
    hub = make_hub(own_redis.url)
    assert hub.link_state == "idle"
    socket, _ = await joined(hub, 1, "a")
    assert hub.link_state == "up"
    assert hub.subscriptions[hub_module._channel(1)].state == SUBSCRIBED
    await hub.publish(1, "m1", 1)
    await until(lambda: socket.texts == ["hello", "m1"])
    await hub.leave(1, "a")
    no_leftovers(hub)
    # No socket left: the link closes rather than idle on a connection nobody watches.
    await until(lambda: hub.link_state == "idle", timeout=5)
    socket, _ = await joined(hub, 1, "b")  # and the next socket opens it again
    await hub.publish(1, "m2", 2)
    await until(lambda: socket.texts == ["hello", "m2"])


async def test_a_join_while_redis_is_down_fails_fast_and_leaves_nothing(make_hub, own_redis):
    hub = make_hub(own_redis.url)
    own_redis.kill()
    started = time.monotonic()
    with pytest.raises(HubUnavailable):
        await joined(hub, 2, "a")
    assert time.monotonic() - started < 3  # refused at once, not after the 5 s wait
    # The failed subscription stays only while its socket does, and not as a
    # pending future: the caller's cleanup removes the last trace.
    assert hub.subscriptions[hub_module._channel(2)].state == FAILED
    assert hub.subscriptions[hub_module._channel(2)].confirmed.done() is False
    await hub.leave(2, "a")
    no_leftovers(hub)
    assert hub.problem() == ""  # nothing wanted, nothing broken

    # Redis returns: the same room works on this hub, with no restart.
    own_redis.start()
    socket = await joined_once_redis_answers(hub, 2, "b")
    await hub.publish(2, "back", 3)
    await until(lambda: socket.texts == ["hello", "back"])


async def test_a_lost_link_closes_sockets_then_resubscribes_what_is_still_wanted(
    make_hub, own_redis
):
    hub = make_hub(own_redis.url)
    first, _ = await joined(hub, 3, "a")
    other, _ = await joined(hub, 4, "b")
    seen = []
    await hub.join_user(7, "a", seen.append)
    own_redis.kill()
    # subscribed -> lost: every local socket resyncs, control handlers too.
    await until(lambda: closed_with(first) == protocol.CLOSE_RESTART)
    await until(lambda: closed_with(other) == protocol.CLOSE_RESTART)
    assert {"resync": True} in seen
    await until(lambda: hub.link_state == "down")
    assert "down" in hub.problem()
    assert hub.subscriptions[hub_module._channel(3)].state in (LOST, FAILED)
    # Room 4's socket goes away during the outage (its client reconnects elsewhere).
    await hub.leave(4, "b")
    own_redis.start()
    # lost -> resubscribing -> subscribed, for what still has a socket here.
    await until(lambda: hub.link_state == "up", timeout=10)
    await until(lambda: hub.subscriptions[hub_module._channel(3)].state == SUBSCRIBED)
    assert hub_module._channel(4) not in hub.subscriptions
    assert hub.problem() == ""
    # The reconnected client's new socket gets frames again.
    await hub.leave(3, "a")
    again, _ = await joined(hub, 3, "a2")
    await hub.publish(3, "after", 9)
    await until(lambda: again.texts == ["hello", "after"])
    await hub.leave(3, "a2")
    await hub.leave_user(7, "a")
    no_leftovers(hub)


async def test_unsubscribe_during_an_outage_raises_nothing_and_leaves_nothing(make_hub, own_redis):
    hub = make_hub(own_redis.url)
    await joined(hub, 5, "a")
    await joined(hub, 6, "b")
    own_redis.kill()
    await hub.leave(5, "a")  # may hit the dead link before the reader notices
    await until(lambda: hub.link_state == "down")
    await hub.leave(6, "b")
    no_leftovers(hub)


async def test_joins_racing_a_failure_all_finish_and_then_all_work(make_hub, own_redis):
    hub = make_hub(own_redis.url)
    await joined(hub, 10, "warm")  # the link is up

    async def join(n: int):
        try:
            await joined(hub, 100 + n, f"c{n}")
            return "ok"
        except HubUnavailable:
            await hub.leave(100 + n, f"c{n}")
            return "failed"

    started = time.monotonic()
    racing = [asyncio.create_task(join(n)) for n in range(50)]
    await asyncio.sleep(0)
    own_redis.kill()
    results = await asyncio.gather(*racing)
    # Every join ended, either way, within the subscribe timeout: none hangs.
    assert time.monotonic() - started < hub_module.SUBSCRIBE_TIMEOUT + 2
    assert set(results) <= {"ok", "failed"}
    await until(lambda: hub.link_state == "down")
    for n, result in enumerate(results):
        if result == "ok":  # it joined just before the failure; its socket was closed
            await hub.leave(100 + n, f"c{n}")
    await hub.leave(10, "warm")
    no_leftovers(hub)

    own_redis.start()
    sockets = [await joined_once_redis_answers(hub, 100 + n, f"d{n}") for n in range(50)]
    for n in range(50):
        await hub.publish(100 + n, f"to {n}", 1)
    await until(lambda: all(s.texts == ["hello", f"to {n}"] for n, s in enumerate(sockets)))


async def test_a_silent_link_is_found_dead_by_the_keep_alive(make_hub, own_redis, settings):
    """A half-open connection (a partition): no error ever arrives, only silence."""
    settings.CHAT_REDIS_KEEPALIVE = 1
    proxy = TcpProxy("127.0.0.1", own_redis.port).start()
    try:
        hub = make_hub(f"redis://127.0.0.1:{proxy.port}/0")
        socket, _ = await joined(hub, 11, "a")
        proxy.hang()
        started = time.monotonic()
        await until(lambda: closed_with(socket) == protocol.CLOSE_RESTART, timeout=10)
        # silent for a period -> PING; no answer for two periods -> dead.
        assert time.monotonic() - started <= 2 * 1 + 2
        proxy.restore()
        await hub.leave(11, "a")
        again = await joined_once_redis_answers(hub, 11, "b")
        await hub.publish(11, "healed", 2)
        await until(lambda: again.texts == ["hello", "healed"])
    finally:
        proxy.stop()


async def test_a_quiet_link_stays_up_past_several_keep_alive_periods(make_hub, redis_url, settings):
    """The bug this replaces: a health-check PING read by the reader's rival."""
    settings.CHAT_REDIS_KEEPALIVE = 1
    hub = make_hub(redis_url)
    socket, _ = await joined(hub, 12, "a")
    await asyncio.sleep(3.5)  # three keep-alive rounds with nothing else on the link
    other, _ = await joined(hub, 13, "b")  # a SUBSCRIBE on the quiet link
    await hub.publish(12, "still here", 1)
    await hub.publish(13, "me too", 2)
    await until(lambda: socket.texts == ["hello", "still here"])
    await until(lambda: other.texts == ["hello", "me too"])
    assert closed_with(socket) is None and hub.link_state == "up"
    await hub.leave(12, "a")
    await hub.leave(13, "b")


async def test_a_failed_publish_is_sent_when_redis_is_back(make_hub, own_redis):
    hub = make_hub(own_redis.url)
    sender, receiver = make_hub(own_redis.url), hub
    socket, _ = await joined(receiver, 14, "r")
    own_redis.kill()
    await until(lambda: closed_with(socket) == protocol.CLOSE_RESTART)
    await sender.publish(14, "kept", 5)  # never raises: kept, and /healthz says so
    await until(lambda: sender.problem() == "1 frame(s) waiting for Redis")
    await receiver.leave(14, "r")
    own_redis.start()
    again = await joined_once_redis_answers(receiver, 14, "r2")
    await sender.publish(14, "next", 6)  # flushes the kept frame first, in order
    await until(lambda: again.texts == ["hello", "kept", "next"])
    assert not sender._unsent and sender.problem() == ""


def test_subscription_transitions_fail_pending_waiters_and_renew_them():
    loop = asyncio.new_event_loop()
    try:
        sub = Subscription("chan", loop)
        assert sub.state == SUBSCRIBING
        waiter = sub.confirmed
        sub.become(LOST, loop, "gone")
        assert waiter.done() and isinstance(waiter.exception(), HubUnavailable)
        assert not sub.confirmed.done()  # a new joiner waits on a fresh future
        sub.become(SUBSCRIBED, loop)
        assert sub.confirmed.done() and sub.confirmed.exception() is None
        sub.become(LOST, loop)
        assert not sub.confirmed.done()
        sub.become(FAILED, loop)
        assert not sub.confirmed.done()
    finally:
        loop.close()
