"""Process-local fan-out of room frames: each frame is encoded once, carried
once per process, and written to each local socket with no other Python work;
and the per-user channel that carries control events (kick, ban, sign-out,
deactivation) to every socket of a user, on every process.

Why not the channel layer: a Channels group send costs, for every member, a
channel-layer hop, a consumer dispatch and a handler call; at 50 members a
room that is most of the server's CPU (docs/performance.md). Here:

- a consumer registers its socket's Outbox in its room (`Hub.join`);
- `Hub.publish` hands a ready frame to every process serving the room: with
  REDIS_URL, one PUBLISH to the room's Redis channel, which each process
  with local members subscribes to once; without Redis, straight to the
  local outboxes;
- `Outbox.put` appends the frame to the socket's bounded queue, written in
  order by the socket's own writer task.

What the channel layer gave is kept: per-room order (one reader per
process, one queue per socket), no frame after a socket closed (its outbox
is dropped and stops), and a bounded buffer per slow socket: past
OUTBOX_LIMIT queued frames the socket is closed (4008) and catches up from
storage when it reconnects, instead of growing memory or slowing the room.
Redis pub/sub is at-most-once: storage plus catch-up is what guarantees
delivery. If the subscription connection fails, every local socket is
closed (1012) so that its client reconnects and catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from asgiref.sync import async_to_sync

from chatrooms import protocol
from chatrooms.redis import get_redis, key, redis_url, sync_redis

logger = logging.getLogger(__name__)

OUTBOX_LIMIT = 1000  # frames queued for one socket before it counts as too slow
SUBSCRIBE_TIMEOUT = 5.0

Send = Callable[[dict], Awaitable[None]]


class Outbox:
    """One socket's ordered, bounded queue of frames, and the task writing it."""

    __slots__ = ("send", "queue", "held", "floor", "closed", "waiter", "task", "room_id")

    def __init__(self, send: Send, room_id: int) -> None:
        self.send = send
        self.room_id = room_id
        self.queue: deque[str | int] = deque()  # text frames; an int is a close code
        # Until hello is out, frames wait here with their message ids, so that
        # the ones hello already holds can be dropped.
        self.held: list[tuple[int, str]] | None = []
        self.floor = 0
        self.closed = False
        self.waiter: asyncio.Future | None = None
        self.task: asyncio.Task | None = None

    def put(self, text: str, message_id: int = 0) -> None:
        """Queue a frame (a message's frame carries its id)."""
        if self.closed:
            return
        if self.held is not None:
            self.held.append((message_id, text))
            return
        if message_id and message_id <= self.floor:
            return
        if len(self.queue) >= OUTBOX_LIMIT:
            logger.info(
                "closing a socket of room %s: %d frames behind", self.room_id, len(self.queue)
            )
            self.queue.clear()
            self.close(protocol.CLOSE_TOO_SLOW)
            return
        self.queue.append(text)
        self._wake()

    def release(self, first: str, floor: int) -> None:
        """Send `first` (hello), then what arrived meanwhile, minus ids <= floor."""
        held, self.held, self.floor = self.held or [], None, floor
        self.queue.append(first)
        self.queue.extend(text for message_id, text in held if not message_id or message_id > floor)
        self._wake()

    def close(self, code: int) -> None:
        """Write what is queued, then close the socket with `code`; accept nothing more."""
        if self.closed:
            return
        if self.held is not None:
            self.held = None
        self.queue.append(code)
        self._wake()
        self.closed = True

    def stop(self) -> None:
        """The socket is gone: drop everything, end the writer."""
        self.closed = True
        self.queue.clear()
        self.held = None
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def _wake(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._write())
        elif self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def _write(self) -> None:
        queue, send = self.queue, self.send
        loop = asyncio.get_running_loop()
        try:
            while True:
                while queue:
                    item = queue.popleft()
                    if isinstance(item, int):
                        await send({"type": "websocket.close", "code": item})
                        queue.clear()
                        return
                    await send({"type": "websocket.send", "text": item})
                if self.closed:
                    return
                self.waiter = loop.create_future()
                await self.waiter
                self.waiter = None
        except asyncio.CancelledError:
            raise
        except Exception:  # the peer vanished mid-write; disconnect cleans up
            self.closed = True
            queue.clear()


def _channel(room_id: int) -> str:
    return key("room", room_id)


def _user_channel(user_id: int) -> str:
    return key("user", user_id)


def _pack(text: str, message_id: int, skip: str, close: int) -> str:
    return f"{message_id}|{skip}|{close}|{text}"


def _unpack(payload: bytes) -> tuple[int, str, int, str]:
    message_id, skip, close, text = payload.decode().split("|", 3)
    return int(message_id), skip, int(close), text


class Hub:
    """The rooms and users of this process, with their local sockets."""

    def __init__(self) -> None:
        self.rooms: dict[int, dict[str, Outbox]] = {}
        # Per user: conn id -> the socket's handler of control events (close
        # for a kick, ban, sign-out, deactivation): the per-user group.
        self.users: dict[int, dict[str, Callable[[dict], None]]] = {}
        self._pubsub = None
        self._reader: asyncio.Task | None = None
        self._subscribed: dict[str, asyncio.Future] = {}
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    # --- Local sockets -------------------------------------------------------------

    async def join(self, room_id: int, conn_id: str, outbox: Outbox) -> None:
        """Deliver the room's frames to `outbox` from now on (subscription confirmed)."""
        local = self.rooms.setdefault(room_id, {})
        local[conn_id] = outbox
        if redis_url():
            await self._subscribe(_channel(room_id))

    async def leave(self, room_id: int, conn_id: str) -> None:
        """Stop delivering to that socket; unsubscribe when the room has none here."""
        local = self.rooms.get(room_id)
        if local is None:
            return
        outbox = local.pop(conn_id, None)
        if outbox is not None:
            outbox.stop()
        if not local:
            del self.rooms[room_id]
            await self._unsubscribe(_channel(room_id))

    async def join_user(self, user_id: int, conn_id: str, handler: Callable[[dict], None]):
        """Hand the user's control events (from any process) to `handler` from now on."""
        self.users.setdefault(user_id, {})[conn_id] = handler
        if redis_url():
            await self._subscribe(_user_channel(user_id))

    async def leave_user(self, user_id: int, conn_id: str) -> None:
        local = self.users.get(user_id)
        if local is None:
            return
        local.pop(conn_id, None)
        if not local:
            del self.users[user_id]
            await self._unsubscribe(_user_channel(user_id))

    def deliver_user(self, user_id: int, event: dict) -> None:
        """Run a control event on every local socket of the user."""
        for handler in list(self.users.get(user_id, {}).values()):
            handler(event)

    def publish_user_sync(self, user_id: int, event: dict) -> None:
        """A control event for every socket of the user, on every process."""
        if redis_url():
            sync_redis().publish(_user_channel(user_id), protocol.encode(event))
        else:
            async_to_sync(self._deliver_user_async)(user_id, event)

    async def _deliver_user_async(self, user_id: int, event: dict) -> None:
        self.deliver_user(user_id, event)

    def deliver(
        self, room_id: int, text: str, message_id: int = 0, skip: str = "", close: int = 0
    ) -> None:
        """Queue a frame on every local socket of the room (but `skip`).

        With `close`, the frame is the last: each socket is then closed with that code.
        """
        local = self.rooms.get(room_id)
        if not local:
            return
        if close:
            for outbox in local.values():
                outbox.put(text)
                outbox.close(close)
            return
        for conn_id, outbox in local.items():
            if conn_id != skip:
                outbox.put(text, message_id)

    # --- Publishing -------------------------------------------------------------------

    async def publish(
        self, room_id: int, text: str, message_id: int = 0, skip: str = "", close: int = 0
    ) -> None:
        """Send a ready frame to every socket of the room, on every process."""
        if redis_url():
            await get_redis().publish(_channel(room_id), _pack(text, message_id, skip, close))
        else:
            self.deliver(room_id, text, message_id, skip, close)

    def publish_sync(self, room_id: int, text: str, close: int = 0) -> None:
        """publish() for synchronous code (services after commit, admin, commands)."""
        if redis_url():
            sync_redis().publish(_channel(room_id), _pack(text, 0, "", close))
        else:
            async_to_sync(self.publish)(room_id, text, close=close)

    # --- Redis subscription ------------------------------------------------------------

    async def _unsubscribe(self, channel: str) -> None:
        if redis_url() and self._pubsub is not None:
            self._subscribed.pop(channel, None)
            with contextlib.suppress(Exception):
                await self._pubsub.unsubscribe(channel)

    async def _subscribe(self, channel: str) -> None:
        future = self._subscribed.get(channel)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._subscribed[channel] = loop.create_future()
            if self._lock is None or self._lock_loop is not loop:
                self._lock, self._lock_loop = asyncio.Lock(), loop
            # One at a time: two first subscriptions at once would each make
            # a connection, and a reader could start on one not yet subscribed.
            async with self._lock:
                reader = self._reader
                if (
                    self._pubsub is None
                    or reader is None
                    or reader.done()
                    or (reader.get_loop() is not loop)
                ):
                    pubsub = get_redis().pubsub()
                    await pubsub.subscribe(channel)
                    self._pubsub = pubsub
                    self._reader = loop.create_task(self._read(pubsub))
                else:
                    await self._pubsub.subscribe(channel)
        await asyncio.wait_for(asyncio.shield(future), SUBSCRIBE_TIMEOUT)

    async def _read(self, pubsub) -> None:
        room_prefix = key("room", "").encode()
        user_prefix = key("user", "").encode()
        prefix_len = len(room_prefix)
        count = 0
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                count += 1
                if count % 64 == 0:
                    # Buffered messages are read without a pause: let the
                    # writers drain the outboxes now and then.
                    await asyncio.sleep(0)
                kind = message["type"]
                channel = message["channel"]
                if kind == "message":
                    if channel.startswith(room_prefix):
                        message_id, skip, close, text = _unpack(message["data"])
                        self.deliver(int(channel[prefix_len:]), text, message_id, skip, close)
                    elif channel.startswith(user_prefix):
                        self.deliver_user(
                            int(channel[len(user_prefix) :]), protocol.decode_json(message["data"])
                        )
                elif kind == "subscribe":
                    future = self._subscribed.get(channel.decode())
                    if future is None:
                        continue
                    if not future.done():
                        future.set_result(None)
                    elif channel.startswith(room_prefix):
                        # redis-py reconnected and subscribed again by itself:
                        # frames published in the gap are lost.
                        self._resync(int(channel[prefix_len:]))
                    else:  # a kick or ban may have been lost: check again on reconnect
                        self.deliver_user(int(channel[len(user_prefix) :]), {"resync": True})
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("room subscription lost; closing local sockets to resync")
            self._fail_all()

    def _resync(self, room_id: int) -> None:
        """Frames of the room may have been missed: its clients reconnect and catch up."""
        logger.warning("room %s subscription was re-established; resyncing sockets", room_id)
        for outbox in self.rooms.get(room_id, {}).values():
            outbox.close(protocol.CLOSE_RESTART)

    def _fail_all(self) -> None:
        """Frames may have been missed: every local client reconnects and catches up."""
        self._pubsub = None
        for future in self._subscribed.values():
            if not future.done():
                future.set_exception(ConnectionError("room subscription lost"))
        self._subscribed.clear()
        for local in self.rooms.values():
            for outbox in local.values():
                outbox.close(protocol.CLOSE_RESTART)
        for user_id in list(self.users):
            self.deliver_user(user_id, {"resync": True})


hub = Hub()
