"""The fan-out hub keeps what the channel layer gave: order, no frame after
close, a bounded buffer per slow socket; and it crosses processes on Redis."""

from __future__ import annotations

import asyncio

import pytest

from chatrooms import protocol
from chatrooms.hub import OUTBOX_LIMIT, Hub, Outbox
from tests.chatrooms.conftest import eventually


class FakeSocket:
    """An ASGI send that records frames; `stuck` never returns, like a peer that never reads."""

    def __init__(self, stuck: bool = False):
        self.sent: list[dict] = []
        self.stuck = stuck

    async def send(self, message: dict) -> None:
        if self.stuck:
            await asyncio.Event().wait()
        self.sent.append(message)

    @property
    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]


async def test_frames_wait_for_hello_and_those_in_hello_are_dropped():
    socket = FakeSocket()
    box = Outbox(socket.send, room_id=1)
    box.put("m4", 4)
    box.put("presence")  # no id: always kept
    box.put("m6", 6)
    assert box.task is None and socket.sent == []  # no writer before hello: nothing goes out
    box.release("hello", floor=5)
    box.put("m5", 5)  # hello had it
    box.put("m7", 7)
    await eventually(lambda: socket.texts == ["hello", "presence", "m6", "m7"])
    assert not box.queue


async def test_room_order_is_kept_for_every_socket():
    hub = Hub()
    sockets = [FakeSocket() for _ in range(3)]
    for n, socket in enumerate(sockets):
        box = Outbox(socket.send, room_id=1)
        hub.rooms.setdefault(1, {})[f"c{n}"] = box
        box.release("hello", floor=0)
    for i in range(1, 301):
        hub.deliver(1, f"m{i}", i)
    expected = ["hello"] + [f"m{i}" for i in range(1, 301)]
    await eventually(lambda: all(socket.texts == expected for socket in sockets))


async def test_skip_leaves_out_one_socket():
    hub = Hub()
    a, b = FakeSocket(), FakeSocket()
    for name, socket in (("a", a), ("b", b)):
        box = Outbox(socket.send, room_id=1)
        box.release("hello", 0)
        hub.rooms.setdefault(1, {})[name] = box
    hub.deliver(1, "typing", skip="a")
    await eventually(lambda: a.texts == ["hello"] and b.texts == ["hello", "typing"])
    assert not hub.rooms[1]["a"].queue  # delivered at once: nothing more is coming to a


async def test_a_stuck_socket_is_closed_and_does_not_slow_the_room():
    hub = Hub()
    stuck, healthy = FakeSocket(stuck=True), FakeSocket()
    for name, socket in (("stuck", stuck), ("healthy", healthy)):
        box = Outbox(socket.send, room_id=1)
        box.release("hello", 0)
        hub.rooms.setdefault(1, {})[name] = box
    await eventually(lambda: healthy.texts == ["hello"])
    healthy_box, stuck_box = hub.rooms[1]["healthy"], hub.rooms[1]["stuck"]
    for i in range(1, OUTBOX_LIMIT + 10):
        hub.deliver(1, f"m{i}", i)
        if i % 50 == 0:
            # Arrivals come over time: the healthy writer keeps up between them.
            await eventually(lambda: not healthy_box.queue)
    await eventually(lambda: len(healthy.texts) == OUTBOX_LIMIT + 10)  # hello + every message
    assert stuck_box.closed
    assert list(stuck_box.queue) == [protocol.CLOSE_TOO_SLOW]  # memory given back
    stuck_box.put("more", 99999)
    assert list(stuck_box.queue) == [protocol.CLOSE_TOO_SLOW]


async def test_close_sends_queued_frames_then_the_close_and_nothing_after():
    socket = FakeSocket()
    box = Outbox(socket.send, room_id=1)
    box.release("hello", 0)
    box.put("closed frame")
    box.close(protocol.CLOSE_POLICY)
    box.put("late")
    await eventually(lambda: box.task is not None and box.task.done())  # the writer ended
    assert socket.sent[-1] == {"type": "websocket.close", "code": protocol.CLOSE_POLICY}
    assert socket.texts == ["hello", "closed frame"]


async def test_no_frame_after_leave():
    hub = Hub()
    socket = FakeSocket()
    box = Outbox(socket.send, room_id=1)
    box.release("hello", 0)
    hub.rooms.setdefault(1, {})["c"] = box
    await hub.leave(1, "c")
    hub.deliver(1, "after", 1)
    await eventually(lambda: box.task.done())  # the writer was stopped: nothing more can go
    assert socket.texts in (["hello"], [])
    assert 1 not in hub.rooms


@pytest.mark.redis
async def test_two_processes_share_room_frames_through_redis(settings, redis_url):
    """Two hubs stand for two server processes on one Redis."""
    settings.REDIS_URL = redis_url
    first, second = Hub(), Hub()
    here, there = FakeSocket(), FakeSocket()
    box_here, box_there = Outbox(here.send, 7), Outbox(there.send, 7)
    await first.join(7, "here", box_here)
    await second.join(7, "there", box_there)
    box_here.release("hello", 0)
    box_there.release("hello", 0)
    for i in range(1, 201):
        await first.publish(7, f"m{i}", i)
    await second.publish(7, "typing", skip="there")
    await eventually(lambda: len(here.texts) == 202 and len(there.texts) == 201)
    expected = ["hello"] + [f"m{i}" for i in range(1, 201)]
    assert there.texts == expected  # in order, across processes, skip honoured
    # One process's frames keep their order; another's may come in between
    # (each process publishes from its own queue).
    assert [text for text in here.texts if text != "typing"] == expected
    assert here.texts.count("typing") == 1
    await first.leave(7, "here")
    await second.leave(7, "there")
    # Forgotten at once (Hub.detach), and the room's channel with it.
    assert 7 not in first.rooms and 7 not in second.rooms
    assert not first.subscriptions and not second.subscriptions
    for hub in (first, second):
        await hub.close()


@pytest.mark.redis
async def test_a_lost_subscription_makes_clients_resync(settings, redis_url):
    from chatrooms.redis import get_redis

    settings.REDIS_URL = redis_url
    hub = Hub()
    socket = FakeSocket()
    box = Outbox(socket.send, 9)
    await hub.join(9, "c", box)
    box.release("hello", 0)
    # Cut this hub's subscription connection as a network blip or a Redis
    # restart would (only that connection: the Redis server is shared).
    host, port = hub._link.pubsub.connection._writer.get_extra_info("sockname")[:2]
    await get_redis().execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")
    await eventually(lambda: socket.sent and socket.sent[-1]["type"] == "websocket.close")
    assert socket.sent[-1] == {"type": "websocket.close", "code": protocol.CLOSE_RESTART}
    await hub.close()


@pytest.mark.redis
async def test_many_first_subscriptions_at_once_share_one_working_reader(settings, redis_url):
    """A burst of connects to fresh rooms: every socket gets its room's frames."""
    settings.REDIS_URL = redis_url
    hub = Hub()
    sockets = [FakeSocket() for _ in range(40)]
    boxes = [Outbox(socket.send, 100 + n) for n, socket in enumerate(sockets)]
    await asyncio.gather(*(hub.join(100 + n, f"c{n}", box) for n, box in enumerate(boxes)))
    for n, box in enumerate(boxes):
        box.release("hello", 0)
        await hub.publish(100 + n, f"for room {100 + n}", 1)
    await eventually(lambda: all(len(s.texts) == 2 for s in sockets))
    assert [s.texts for s in sockets] == [["hello", f"for room {100 + n}"] for n in range(40)]
    await hub.close()


async def test_under_uvicorn_a_burst_goes_out_in_one_write_in_order_then_the_close():
    """uvicorn's websockets-sansio protocol: the outbox writes the frames waiting
    for a socket at once (DirectWriter), in order, keeps no task while idle,
    and closes after the frames queued before the close."""
    import uvicorn
    import websockets

    from tests.live import free_port

    boxes, writes, idle_tasks = [], [], []

    async def app(scope, receive, send):
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        box = Outbox(send, room_id=1)
        boxes.append(box)
        transport = send.__self__.transport
        real_write = transport.write
        transport.write = lambda data: (writes.append(len(data)), real_write(data))[1]
        box.release("hello", floor=0)
        for n in range(200):
            box.put(f"m{n}", n + 1)
        assert (await receive())["text"] == "more"
        idle_tasks.append(box.task)
        for n in range(200, 203):
            box.put(f"m{n}", n + 1)
        box.close(protocol.CLOSE_TOO_SLOW)
        box.put("after the close")
        while (await receive())["type"] != "websocket.disconnect":
            pass

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, ws="websockets-sansio", lifespan="off"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started)
        async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
            got = [await ws.recv() for _ in range(201)]
            assert len(writes) == 1  # hello and 200 frames, one write
            await ws.send("more")
            got += [await ws.recv() for _ in range(3)]
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert got == ["hello"] + [f"m{n}" for n in range(203)]
        assert closed.value.rcvd.code == protocol.CLOSE_TOO_SLOW
        assert boxes[0].direct is not None and idle_tasks == [None]
    finally:
        server.should_exit = True
        await serving
