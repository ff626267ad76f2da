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
delivery. The subscription's life cycle (docs/reliability.md):

    link:          idle -> connecting -> up -> down -> connecting -> ...
    subscription:  subscribing -> subscribed -> lost -> resubscribing -> subscribed
                   (subscribing | lost | resubscribing) -> failed -> resubscribing

One supervisor task per process owns the subscription connection: it
connects, (re)subscribes every channel that has local sockets, starts the
reader, and PINGs every CHAT_REDIS_KEEPALIVE seconds; no answer for two
periods counts as a dead link. When the link dies every local socket is
closed with 4012 (its client reconnects and catches up), every pending
subscription fails at once (no joiner waits on a dead link), and the
supervisor reconnects with backoff until Redis answers, then subscribes
again whatever still has local sockets. A table entry exists exactly while
its channel has local sockets, so no future outlives a failure.

The subscription has a client of its own, without redis-py's
health_check_interval and without retries: a health check PINGs and reads
the reply on the connection the reader is blocked on ("readuntil() called
while another coroutine is already waiting"), and a silent reconnect would
resubscribe behind our back with frames lost in the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from bisect import bisect_left
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from asgiref.sync import async_to_sync
from django.conf import settings
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from chatrooms import metrics, protocol
from chatrooms.redis import get_redis, key, redis_url, sync_redis

logger = logging.getLogger(__name__)

OUTBOX_LIMIT = 1000  # frames queued for one socket before it counts as too slow
SUBSCRIBE_TIMEOUT = 5.0  # a join waits at most this long for Redis to confirm
RETRY_MIN, RETRY_MAX = 0.2, 2.0  # seconds between attempts to reach Redis again
UNSENT_LIMIT = 10_000  # frames kept for a PUBLISH that failed, sent when Redis is back

Send = Callable[[dict], Awaitable[None]]


class HubUnavailable(Exception):
    """Redis cannot carry this process's frames right now."""


class CacheListener(Protocol):
    """A cache that follows what this process hears (chatrooms/access.py)."""

    def user_changed(self, user_id: int, event: dict) -> None:
        """An event reached the user's channel (sign-out, kick, ban, password, ...)."""

    def room_changed(self, room_id: int) -> None:
        """The room was renamed or archived."""

    def reset(self) -> None:
        """Events may have been lost (the link broke): forget everything."""


class DirectWriter:
    """Several text frames in one socket write, under uvicorn's websockets-sansio.

    Through ASGI every frame is a `send` call and a socket write (a system
    call, which on loopback also runs the receiving side's TCP). A socket's
    writer usually finds several frames waiting: a group-commit batch, the
    presence frames of a connect storm. Here they are framed by the
    connection's own websockets state machine and written at once, exactly
    as uvicorn's `send` frames and writes each of them
    (uvicorn/protocols/websockets/websockets_sansio_impl.py), while its own
    conditions for a plain `websocket.send` hold; else the frames go through
    `send` one by one (flow control, closing, any other server).
    """

    __slots__ = ("server", "closing")

    def __init__(self, server) -> None:
        from websockets.exceptions import InvalidState  # uvicorn's sansio protocol is websockets'

        self.server = server
        self.closing = InvalidState

    @staticmethod
    def of(send: Send) -> DirectWriter | None:
        server = getattr(send, "__self__", None)
        if server is None or type(server).__name__ != "WebSocketsSansIOProtocol":
            return None
        if type(server).__module__ != "uvicorn.protocols.websockets.websockets_sansio_impl":
            return None
        return DirectWriter(server)

    def ready(self) -> bool:
        server = self.server
        return (
            server.handshake_complete
            and not server.close_sent
            and not server.disconnected
            and server.initial_response is None
            and server.writable.is_set()
            and not server.transport.is_closing()
        )

    def write(self, texts: list[str]) -> None:
        """Raises ConnectionError when the peer is gone (the connection is closing)."""
        conn = self.server.conn
        try:
            for text in texts:
                conn.send_text(text.encode())
        except self.closing as exc:
            raise ConnectionError("the socket is closing") from exc
        self.server.transport.write(b"".join(conn.data_to_send()))


class Outbox:
    """One socket's ordered, bounded queue of frames, and how it gets written.

    Under uvicorn's websockets-sansio (DirectWriter) a put schedules one
    flush for the loop's next turn, which writes every frame waiting by
    then in one socket write: no task and no future per socket while it is
    idle (a few KiB less per socket) and no task switch per frame. A socket
    the server asks us to stop writing to (flow control), a close, and any
    other server go through the ASGI `send` in a writer task, which under
    uvicorn ends once the queue is empty and under daphne stays for the
    socket's life. Either way one writer at a time, so frames keep their
    order.
    """

    __slots__ = (
        "send",
        "direct",
        "queue",
        "held",
        "floor",
        "closed",
        "waiter",
        "task",
        "scheduled",
        "room_id",
    )

    def __init__(self, send: Send, room_id: int) -> None:
        self.send = send
        self.direct = DirectWriter.of(send)
        self.room_id = room_id
        self.queue: list[str | int] = []  # text frames; an int is a close code
        # Until hello is out, frames wait here with their message ids, so that
        # the ones hello already holds can be dropped.
        self.held: list[tuple[int, str]] | None = []
        self.floor = 0
        self.closed = False
        self.waiter: asyncio.Future | None = None
        self.task: asyncio.Task | None = None
        self.scheduled = False  # a flush is due on the loop's next turn

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
            metrics.OUTBOX_CLOSED["too_slow"].inc()
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
        """Write what is queued, then close the socket with `code`; accept nothing more.

        The writer task (`task`) ends once the close is written."""
        if self.closed:
            return
        if self.held is not None:
            self.held = None
        self.queue.append(code)
        self.closed = True
        if self.task is None:
            self._start()
        else:
            self._wake()

    def stop(self) -> None:
        """The socket is gone: drop everything, end the writer."""
        self.closed = True
        self.queue.clear()
        self.held = None
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def _wake(self) -> None:
        if self.task is not None:
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif self.direct is None:
            self._start()
        elif not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._write())

    def _flush(self) -> None:
        """Write what waits, at once, when the socket takes it (see the class docstring)."""
        self.scheduled = False
        queue = self.queue
        if self.task is not None or not queue:
            return
        direct = self.direct
        if isinstance(queue[0], str) and direct.ready():
            texts = self._texts()
            try:
                direct.write(texts)
            except Exception:  # the peer vanished mid-write; disconnect cleans up
                self.closed = True
                self.queue.clear()
                return
        if self.queue:  # a close, or a socket that takes no more for now
            self._start()

    def _texts(self) -> list[str]:
        """Take the text frames at the head of the queue (up to a close)."""
        queue = self.queue
        for n, item in enumerate(queue):
            if not isinstance(item, str):
                texts = queue[:n]
                del queue[:n]
                return texts
        self.queue = []
        return queue

    async def _write(self) -> None:
        send, direct = self.send, self.direct
        loop = asyncio.get_running_loop()
        try:
            while True:
                while self.queue:
                    queue = self.queue
                    if direct is not None and isinstance(queue[0], str) and direct.ready():
                        direct.write(self._texts())
                        continue
                    item = queue.pop(0)
                    if isinstance(item, int):
                        await send({"type": "websocket.close", "code": item})
                        self.queue.clear()
                        return
                    await send({"type": "websocket.send", "text": item})
                if self.closed:
                    return
                if direct is not None:  # all written: flushes take over again
                    self.task = None
                    return
                self.waiter = loop.create_future()
                await self.waiter
                self.waiter = None
        except asyncio.CancelledError:
            raise
        except Exception:  # the peer vanished mid-write; disconnect cleans up
            self.closed = True
            self.queue.clear()


def _channel(room_id: int) -> str:
    return key("room", room_id)


def _user_channel(user_id: int) -> str:
    return key("user", user_id)


def _pack(text: str, message_id: int, skip: str, close: int) -> str:
    return f"{message_id}|{skip}|{close}|{text}"


def _unpack(payload: bytes) -> tuple[int, str, int, str]:
    message_id, skip, close, text = payload.decode().split("|", 3)
    return int(message_id), skip, int(close), text


def _fail(future: asyncio.Future, reason: str) -> None:
    """Fail a pending future without an "exception never retrieved" warning."""
    if not future.done():
        future.set_exception(HubUnavailable(reason))
        future.exception()


# Subscription states (the module docstring draws the machine).
SUBSCRIBING, SUBSCRIBED, LOST, RESUBSCRIBING, FAILED = (
    "subscribing",
    "subscribed",
    "lost",
    "resubscribing",
    "failed",
)


class Subscription:
    """One Redis channel this process wants: it has local sockets."""

    __slots__ = ("channel", "state", "confirmed", "since")

    def __init__(self, channel: str, loop: asyncio.AbstractEventLoop) -> None:
        self.channel = channel
        self.state = SUBSCRIBING
        self.confirmed: asyncio.Future = loop.create_future()
        self.since = loop.time()

    def become(self, state: str, loop: asyncio.AbstractEventLoop, reason: str = "") -> None:
        """Move to `state`; leaving "subscribed" or failing starts a new confirmation."""
        if state in (LOST, FAILED):
            _fail(self.confirmed, reason or state)
        if self.confirmed.done() and state != SUBSCRIBED:
            self.confirmed = loop.create_future()
        if state == SUBSCRIBED and not self.confirmed.done():
            self.confirmed.set_result(None)
        if state != self.state:
            self.since = loop.time()
        self.state = state


class _Link:
    """One subscription connection: its client, its pub/sub and what it owes."""

    __slots__ = ("client", "pubsub", "unconfirmed", "last_seen", "dead")

    def __init__(self, client: aioredis.Redis, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.pubsub = client.pubsub()
        # SUBSCRIBE commands sent and not yet confirmed, per channel: a channel
        # is subscribed when the last one sent is confirmed (an UNSUBSCRIBE
        # and a SUBSCRIBE of the same channel can be in flight together).
        self.unconfirmed: dict[str, int] = {}
        self.last_seen = loop.time()
        self.dead = False

    async def subscribe(self, channels: list[str]) -> None:
        for channel in channels:
            self.unconfirmed[channel] = self.unconfirmed.get(channel, 0) + 1
        await self.pubsub.subscribe(*channels)

    async def close(self) -> None:
        self.dead = True
        with contextlib.suppress(Exception):
            await self.pubsub.aclose()
        with contextlib.suppress(Exception):
            await self.client.aclose()


# --- The latest messages of each room, as heard here (hello's history) -------------

# The frames that change a room's history, and the one that renames it: a
# prefix test on the encoded text (protocol.encode writes "type" first).
_HISTORY_FRAMES = ('{"type":"chat.message"', '{"type":"chat.edit"', '{"type":"chat.delete"')
_ROOM_FRAME = '{"type":"room"'
Load = Callable[[int], Awaitable[tuple[list[dict], bool]]]


class RecentFrames:
    """A room's latest live messages, kept current from the frames the hub delivers.

    The invariant: `frames` are the room's latest len(frames) live messages,
    oldest first (`complete`: and no older live message exists). Filled once
    from the database after the room's subscription is confirmed, so that
    every later change arrives as a frame; the frames heard while that read
    runs wait in `pending` and are applied on top of it. Then a new message
    is inserted by id (ids are not commit order), an edit replaces its text
    and time, a delete removes it, exactly as the database would show them.
    Up to `cap` (twice the page) are kept, so that deletes rarely send a
    hello back to the database; `page` says when too few are left.
    """

    __slots__ = ("ids", "frames", "complete", "cap", "pending", "ready", "sub", "filled_at")

    def __init__(self, cap: int, sub: Subscription | None, loop: asyncio.AbstractEventLoop):
        self.ids: list[int] = []
        self.frames: list[dict[str, Any]] = []
        self.complete = False
        self.cap = cap
        self.pending: list[dict[str, Any]] | None = []
        self.ready: asyncio.Future = loop.create_future()  # True: filled; False: failed
        self.sub = sub
        self.filled_at = 0.0

    def fill(self, frames: list[dict[str, Any]], has_more: bool, now: float) -> None:
        """The database's latest messages (read after the subscription), then what was heard."""
        self.frames = list(frames)
        self.ids = [frame["id"] for frame in self.frames]
        self.complete = not has_more
        pending, self.pending = self.pending or [], None
        for frame in pending:
            self.apply(frame)
        self.filled_at = now
        if not self.ready.done():
            self.ready.set_result(True)

    def failed(self) -> None:
        self.pending = None
        if not self.ready.done():
            self.ready.set_result(False)

    def apply(self, frame: dict[str, Any]) -> None:
        """One chat.message, chat.edit or chat.delete frame delivered to the room."""
        if self.pending is not None:
            self.pending.append(frame)
            return
        message_id = frame.get("id")
        if not isinstance(message_id, int):
            return
        ids = self.ids
        i = bisect_left(ids, message_id)
        found = i < len(ids) and ids[i] == message_id
        kind = frame.get("type")
        if kind == "chat.message":
            if found:  # a resend after a retry: the stored message again
                self.frames[i] = frame
            elif self.complete or (ids and message_id > ids[0]):
                ids.insert(i, message_id)
                self.frames.insert(i, frame)
                if len(ids) > self.cap:
                    del ids[0], self.frames[0]
                    self.complete = False
            # else: older than every message held, with older ones unknown: not
            # among the latest, or not knowably so; the held ones stay the latest.
        elif kind == "chat.edit" and found:
            # Copied, not changed in place: a hello being built may hold the old one.
            self.frames[i] = {
                **self.frames[i],
                "message": frame.get("message"),
                "edited_at": frame.get("edited_at"),
            }
        elif kind == "chat.delete" and found:
            del ids[i], self.frames[i]

    def page(self, size: int) -> tuple[list[dict[str, Any]], bool] | None:
        """The latest `size` messages and has_more, as the database says; None: too few held."""
        if len(self.frames) > size:
            return self.frames[-size:], True
        if self.complete:
            return list(self.frames), False
        return None


class Hub:
    """The rooms and users of this process, with their local sockets."""

    def __init__(self) -> None:
        self.rooms: dict[int, dict[str, Outbox]] = {}
        # Per user: conn id -> the socket's handler of control events (close
        # for a kick, ban, sign-out, deactivation): the per-user group.
        self.users: dict[int, dict[str, Callable[[dict], None]]] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.link_state = "idle"  # idle | connecting | up | down
        self.last_error = ""
        self._link: _Link | None = None
        self._supervisor: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsent: deque[tuple[str, str]] = deque(maxlen=UNSENT_LIMIT)
        # Frames to PUBLISH, in order; a future marks where publish_stored waits.
        self._outgoing: deque[tuple[str, str] | asyncio.Future] = deque()
        self._sender: asyncio.Task | None = None
        self._uses_redis: bool | None = None
        self._flush_lock: asyncio.Lock | None = None
        self._flush_lock_loop: asyncio.AbstractEventLoop | None = None
        # hello's history per room (RecentFrames, below), and the caches that
        # drop what the frames and control events heard here make stale.
        self.recent: dict[int, RecentFrames] = {}
        self.cache_listeners: list[CacheListener] = []

    @property
    def uses_redis(self) -> bool:
        """Redis carries frames between processes (REDIS_URL set), chosen once.

        Chosen at the first use and again only when the setting changes
        (tests), not asked on every frame.
        """
        if self._uses_redis is None:
            self._uses_redis = bool(redis_url())
        return self._uses_redis

    def settings_changed(self) -> None:
        """REDIS_URL changed (tests): choose the backend again."""
        self._uses_redis = None

    # --- Local sockets -------------------------------------------------------------

    async def join(self, room_id: int, conn_id: str, outbox: Outbox) -> None:
        """Deliver the room's frames to `outbox` from now on (subscription confirmed).

        Raises HubUnavailable when Redis cannot confirm it; the caller then
        leaves (the socket is registered either way).
        """
        self.rooms.setdefault(room_id, {})[conn_id] = outbox
        self._on_loop()
        if self.uses_redis:
            await self._want(_channel(room_id))

    async def leave(self, room_id: int, conn_id: str) -> None:
        """Stop delivering to that socket; unsubscribe when the room has none here."""
        await self.unsubscribe(self.detach(conn_id, room_id=room_id))

    async def join_user(self, user_id: int, conn_id: str, handler: Callable[[dict], None]):
        """Hand the user's control events (from any process) to `handler` from now on."""
        self.users.setdefault(user_id, {})[conn_id] = handler
        self._on_loop()
        if self.uses_redis:
            await self._want(_user_channel(user_id))

    async def leave_user(self, user_id: int, conn_id: str) -> None:
        await self.unsubscribe(self.detach(conn_id, user_id=user_id))

    def detach(self, conn_id: str, *, room_id: int = 0, user_id: int = 0) -> list[str]:
        """Forget a socket here, at once (no await); returns the channels to unsubscribe.

        Synchronous so that cleanup cannot be cut halfway through: a socket
        whose cleanup is cancelled or fails later still leaves no trace here.
        """
        unwanted = []
        local = self.rooms.get(room_id) if room_id else None
        if local is not None:
            outbox = local.pop(conn_id, None)
            if outbox is not None:
                outbox.stop()
            if not local:
                del self.rooms[room_id]
                self.recent.pop(room_id, None)  # no local socket: nothing keeps it current
                unwanted.append(_channel(room_id))
        handlers = self.users.get(user_id) if user_id else None
        if handlers is not None:
            handlers.pop(conn_id, None)
            if not handlers:
                del self.users[user_id]
                unwanted.append(_user_channel(user_id))
        return [channel for channel in unwanted if self._forget(channel)]

    def deliver_user(self, user_id: int, event: dict) -> None:
        """Run a control event on every local socket of the user.

        The caches hear it first (any event drops what is cached of the
        user); an `invalidate` event is for them only.
        """
        for listener in self.cache_listeners:
            try:
                listener.user_changed(user_id, event)
            except Exception:
                logger.exception("cache invalidation failed")
        if event.get("invalidate"):
            return
        for conn_id, handler in list(self.users.get(user_id, {}).items()):
            try:
                handler(event)
            except Exception:  # one socket's bug must not starve the others
                metrics.socket_log.exception(
                    "control event handler failed on socket %s",
                    conn_id,
                    extra=metrics.socket_fields("error", socket_id=conn_id, user_id=user_id),
                )

    def publish_user_sync(self, user_id: int, event: dict) -> None:
        """A control event for every socket of the user, on every process.

        Runs after a commit: a Redis failure is logged, not raised (the write
        stands). The sockets it misses are closed with 4012 when their
        process's subscription breaks, and re-checked at the next handshake.
        """
        if self.uses_redis:
            try:
                sync_redis().publish(_user_channel(user_id), protocol.encode(event))
            except Exception:
                logger.warning("control event for user %s not published", user_id, exc_info=True)
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
        self._heard(room_id, text, close)
        local = self.rooms.get(room_id)
        if not local:
            return
        if close:
            for outbox in local.values():
                outbox.put(text)
                outbox.close(close)
            metrics.frames_delivered.inc(len(local))
            return
        for conn_id, outbox in local.items():
            if conn_id != skip:
                outbox.put(text, message_id)
        # One increment per frame for all its sockets: the fan-out stays one loop.
        metrics.frames_delivered.inc(len(local) - (skip in local))

    # --- Publishing -------------------------------------------------------------------

    async def publish(
        self, room_id: int, text: str, message_id: int = 0, skip: str = "", close: int = 0
    ) -> None:
        """Send a ready frame to every socket of the room (but `skip`), on every process."""
        self._on_loop()
        self._enqueue((room_id, text, message_id, skip, close))

    def publish_sync(self, room_id: int, text: str, message_id: int = 0, close: int = 0) -> None:
        """publish() for synchronous code: every service, after its commit.

        In a server process (the hub's loop runs) the frame joins the same
        ordered queue as publish(): no thread waits for Redis, and frames
        leave in the order they were committed (a process's writes run on
        one thread). Elsewhere (a command, a WSGI view) it is published at
        once. A Redis failure is logged, not raised: the write stands, and
        open rooms get it in their catch-up when they resync.
        """
        item = (room_id, text, message_id, "", close)
        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                on_loop = asyncio.get_running_loop() is loop
            except RuntimeError:
                on_loop = False
            if on_loop:
                self._enqueue(item)
            else:
                loop.call_soon_threadsafe(self._enqueue, item)
            return
        if self.uses_redis:
            try:
                sync_redis().publish(_channel(room_id), _pack(text, message_id, "", close))
            except Exception:
                logger.warning("frame for room %s not published", room_id, exc_info=True)
        else:
            async_to_sync(self.publish)(room_id, text, message_id, close=close)

    async def publish_stored(self, items: list[tuple[int, str, int]], hold: float) -> bool:
        """Publish just-stored messages (room, frame, id), in order; wait until Redis has them.

        The group-commit writer (chatrooms/writer.py) holds the rooms' order
        locks until this returns, so that no process publishes a later
        message of the room first. True once Redis took them (or, without
        Redis, once they are queued on the local sockets); False if they are
        still kept for a failed PUBLISH after `hold` seconds of retrying.
        """
        self._on_loop()
        for room_id, text, message_id in items:
            self._enqueue((room_id, text, message_id, "", 0))
        if not self.uses_redis:
            return True
        done = asyncio.get_running_loop().create_future()
        self._outgoing.append(done)
        self._start_sender()
        if await done:
            return True
        deadline = asyncio.get_running_loop().time() + hold
        delay = RETRY_MIN
        while self._unsent and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            await self._flush_unsent()
        return not self._unsent

    def _start_sender(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_outgoing())

    def _enqueue(self, item: tuple[int, str, int, str, int]) -> None:
        """On the loop: deliver (no Redis) or queue for the one task that publishes, in order.

        A PUBLISH that fails is kept (up to UNSENT_LIMIT frames) and sent,
        still in order, once Redis answers again, for the processes whose
        sockets did not resync meanwhile; this process's link is checked at
        once. Publishing never raises to the caller.
        """
        room_id, text, message_id, skip, close = item
        if not self.uses_redis:
            self.deliver(room_id, text, message_id, skip, close)
            return
        self._outgoing.append((_channel(room_id), _pack(text, message_id, skip, close)))
        self._start_sender()

    async def _send_outgoing(self) -> None:
        """Publish the queued frames in order, a pipelined batch per round trip.

        A future in the queue (publish_stored) is answered once the frames
        before it are out: True, or False when they were kept in _unsent.
        """
        queue = self._outgoing
        while queue:
            batch, waiting = [], []
            while queue and len(batch) < 256:
                item = queue.popleft()
                (waiting if isinstance(item, asyncio.Future) else batch).append(item)
            sent = False
            if self._unsent:  # older frames wait for Redis: keep the order
                self._unsent.extend(batch)
                await self._flush_unsent()
                sent = not self._unsent
            elif batch:
                pipe = get_redis().pipeline(transaction=False)
                for channel, payload in batch:
                    pipe.publish(channel, payload)
                try:
                    await pipe.execute()
                    sent = True
                except Exception:
                    # Some may have gone out: sent again, they reach clients that
                    # drop an id they already have (docs/protocol.md).
                    logger.warning("%d frame(s) kept until Redis answers", len(batch))
                    self._unsent.extend(batch)
                    self._suspect_link()
            else:
                sent = True
            for future in waiting:
                if not future.done():
                    future.set_result(sent)

    async def _flush_unsent(self) -> None:
        """Publish the frames kept from failed PUBLISHes, oldest first; stop at a failure.

        Several tasks flush (the keep-alive, every publish while frames wait):
        one at a time, so that no frame is sent twice or overtaken.
        """
        loop = asyncio.get_running_loop()
        if self._flush_lock is None or self._flush_lock_loop is not loop:
            self._flush_lock, self._flush_lock_loop = asyncio.Lock(), loop
        async with self._flush_lock:
            client = get_redis()
            while self._unsent:
                try:
                    await client.publish(*self._unsent[0])
                except Exception:
                    return
                self._unsent.popleft()

    # --- hello's history and the connect caches -----------------------------------------

    def _heard(self, room_id: int, text: str, close: int) -> None:
        """A frame for the room reached this process: keep hello's history and caches current."""
        recent = self.recent.get(room_id)
        if recent is not None and text.startswith(_HISTORY_FRAMES):
            try:
                recent.apply(orjson.loads(text))
            except Exception:  # not ours to judge: the history is read again instead
                logger.exception("cannot apply a frame to room %s's recent history", room_id)
                self.recent.pop(room_id, None)
        if close or text.startswith(_ROOM_FRAME):  # archived, renamed
            for listener in self.cache_listeners:
                try:
                    listener.room_changed(room_id)
                except Exception:
                    logger.exception("cache invalidation failed")

    def forget_caches(self) -> None:
        """Events may have been missed: drop hello's histories and every connect cache."""
        recent, self.recent = self.recent, {}
        for ring in recent.values():
            with contextlib.suppress(RuntimeError):  # a future of a closed loop (tests)
                ring.failed()
        for listener in self.cache_listeners:
            try:
                listener.reset()
            except Exception:
                logger.exception("cache reset failed")

    async def recent_page(self, room_id: int, size: int, load: Load) -> tuple[list[dict], bool]:
        """hello's history: the room's latest `size` live messages (oldest first), has_more.

        From the room's RecentFrames when this process has one (no database
        read), else from `load(limit)` (the database), which then fills one
        for the next sockets. Call it after joining the room (Hub.join):
        only then is the subscription confirmed, and every frame from then on
        is both held for this socket and applied to the ring. The first
        sockets of a room wait for one read together. A ring lives while the
        room has local sockets and its subscription stays up, and is read
        again after CHAT_CONNECT_CACHE_SECONDS (a changed display name
        shows in hello by then). Only with Redis: see below.
        """
        loop = self._on_loop()
        if not self.uses_redis:
            # Without Redis this process hears only its own writes, not a
            # command's or another process's (`manage.py shell`, an import):
            # a ring could miss messages, so hello reads the database.
            return await load(size)
        max_age = float(getattr(settings, "CHAT_CONNECT_CACHE_SECONDS", 30))
        for _ in range(2):
            recent = self.recent.get(room_id)
            if recent is not None and not recent.ready.done():
                if not await asyncio.shield(recent.ready):
                    break  # its read failed: this socket reads for itself
                continue
            if recent is not None:
                fresh = loop.time() - recent.filled_at < max_age
                if fresh and self._recent_valid(room_id, recent):
                    result = recent.page(size)
                    if result is not None:
                        return result
                if self.recent.get(room_id) is recent:
                    del self.recent[room_id]
            return await self._fill_recent(room_id, size, load, loop, max_age)
        frames, has_more = await load(size)
        return frames, has_more

    def _recent_valid(self, room_id: int, recent: RecentFrames) -> bool:
        if not self.uses_redis:
            return True
        sub = self.subscriptions.get(_channel(room_id))
        return sub is not None and sub is recent.sub and sub.state == SUBSCRIBED

    async def _fill_recent(
        self, room_id: int, size: int, load: Load, loop: asyncio.AbstractEventLoop, max_age: float
    ) -> tuple[list[dict], bool]:
        sub = self.subscriptions.get(_channel(room_id)) if self.uses_redis else None
        keep = max_age > 0 and room_id in self.rooms
        if self.uses_redis and (sub is None or sub.state != SUBSCRIBED):
            keep = False  # frames might be missed: read, but keep nothing
        if not keep:
            return await load(size)
        recent = self.recent[room_id] = RecentFrames(2 * size, sub, loop)
        try:
            frames, has_more = await load(recent.cap)
        except BaseException:
            recent.failed()
            if self.recent.get(room_id) is recent:
                del self.recent[room_id]
            raise
        recent.fill(frames, has_more, loop.time())
        result = recent.page(size) if self.recent.get(room_id) is recent else None
        if result is None:  # dropped meanwhile, or deletes heard during the read
            return frames[-size:], has_more or len(frames) > size
        return result

    # --- Health --------------------------------------------------------------------

    def problem(self) -> str:
        """Why this process cannot deliver room frames right now ("" when it can)."""
        if not self.uses_redis:
            return ""
        if self._unsent:
            return f"{len(self._unsent)} frame(s) waiting for Redis"
        if not self.subscriptions:
            return ""
        if self.link_state == "down":
            return f"redis subscription down ({self.last_error or 'unreachable'})"
        loop = self._loop
        if loop is None:
            return ""
        now = loop.time()
        stuck = [
            sub.channel
            for sub in self.subscriptions.values()
            if sub.state != SUBSCRIBED and now - sub.since > SUBSCRIBE_TIMEOUT
        ]
        if stuck:
            return f"{len(stuck)} subscription(s) unconfirmed for over {SUBSCRIBE_TIMEOUT:g} s"
        return ""

    # --- Redis subscription ------------------------------------------------------------

    def _on_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop; a hub moved to another loop (tests) starts afresh."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self.forget_caches()
            self.subscriptions = {}
            self._link = None
            self._supervisor = None
            self._sender = None
            self._outgoing.clear()
            self.link_state = "idle"
        return loop

    async def _want(self, channel: str) -> None:
        """Subscribe `channel` (if new) and wait for Redis to confirm it."""
        loop = self._on_loop()
        sub = self.subscriptions.get(channel)
        if sub is None:
            sub = self.subscriptions[channel] = Subscription(channel, loop)
            link = self._link
            if self.link_state == "up" and link is not None and not link.dead:
                try:
                    await link.subscribe([channel])
                except Exception as exc:
                    self._abort(link, exc)
            self._ensure_supervisor(loop)
        if sub.state == SUBSCRIBED:
            return
        if self.link_state == "down":
            raise HubUnavailable(f"Redis is unreachable ({self.last_error})")
        try:
            await asyncio.wait_for(asyncio.shield(sub.confirmed), SUBSCRIBE_TIMEOUT)
        except TimeoutError as exc:
            raise HubUnavailable("Redis did not confirm the subscription in time") from exc

    def _forget(self, channel: str) -> bool:
        """No local socket needs `channel` any more; True when it was subscribed."""
        sub = self.subscriptions.pop(channel, None)
        if sub is None:
            return False
        if not sub.confirmed.done():
            sub.confirmed.cancel()  # nobody waits: every waiter was a local socket
        return True

    async def unsubscribe(self, channels: list[str]) -> None:
        """UNSUBSCRIBE channels already forgotten; a failure drops the link (it heals)."""
        link = self._link
        if not channels or self.link_state != "up" or link is None or link.dead:
            return
        try:
            await link.pubsub.unsubscribe(*channels)
        except Exception as exc:
            self._abort(link, exc)

    def _ensure_supervisor(self, loop: asyncio.AbstractEventLoop) -> None:
        task = self._supervisor
        if task is None or task.done():
            self._supervisor = loop.create_task(self._supervise())

    def _abort(self, link: _Link, exc: BaseException) -> None:
        """A command on the link failed: drop the connection, the supervisor takes over."""
        if link.dead:
            return
        logger.warning("redis subscription command failed: %r", exc)
        link.dead = True
        connection = link.pubsub.connection
        if connection is not None and connection._writer is not None:
            connection._writer.transport.abort()  # the reader fails at once

    def _suspect_link(self) -> None:
        """A PUBLISH failed: PING the link now rather than at the next keep-alive."""
        link = self._link
        if link is not None and not link.dead:
            link.last_seen = -1e9

    def _new_client(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(
            redis_url(),
            health_check_interval=0,  # see the module docstring
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=2,
            socket_timeout=5,  # for writes; the reader blocks without a timeout
            socket_keepalive=True,
            max_connections=1,
        )

    async def _supervise(self) -> None:
        """Keep a working subscription while any channel is wanted (see module docstring)."""
        loop = asyncio.get_running_loop()
        delay = RETRY_MIN
        while self.subscriptions and self._loop is loop:
            link = _Link(self._new_client(), loop)
            reader = None
            recovering = self.link_state == "down"
            try:
                self.link_state = "connecting"
                await self._resubscribe(link, loop)
                self._link = link
                self.link_state = "up"
                if recovering:
                    metrics.redis_reconnects.inc()
                # Joins between our snapshot and "up" sent nothing: send them now.
                late = [c for c in self.subscriptions if c not in link.unconfirmed]
                if late:
                    await link.subscribe(late)
                reader = loop.create_task(self._read(link))
                await self._keep_alive(link, reader, loop)
                delay = RETRY_MIN
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"[:200]
                was_up = self._link is link
                self.link_state = "down"
                if was_up:
                    logger.error("room subscription lost (%s); clients resync", self.last_error)
                    self._lost()
                else:
                    logger.warning("cannot reach Redis for subscriptions: %s", self.last_error)
                    self._failed()
            finally:
                if self._link is link:
                    self._link = None
                if reader is not None:
                    reader.cancel()
                await link.close()
            if self.link_state == "down" and self.subscriptions:
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311
                delay = min(delay * 2, RETRY_MAX)
        if self._loop is loop and self._link is None:
            self.link_state = "idle"

    async def _resubscribe(self, link: _Link, loop: asyncio.AbstractEventLoop) -> None:
        channels = list(self.subscriptions)
        for sub in self.subscriptions.values():
            sub.become(SUBSCRIBING if sub.state == SUBSCRIBING else RESUBSCRIBING, loop)
        await link.subscribe(channels)

    async def _keep_alive(self, link: _Link, reader: asyncio.Task, loop) -> None:
        """PING every period; return when nothing is wanted, raise when the link died."""
        period = float(settings.CHAT_REDIS_KEEPALIVE)
        while True:
            done, _ = await asyncio.wait({reader}, timeout=min(period, 1.0))
            if done:
                reader.result()  # raises what killed the reader
                raise ConnectionError("subscription reader stopped")
            if link.dead:
                raise ConnectionError("subscription connection aborted")
            if not self.subscriptions and not self.rooms and not self.users:
                return  # idle: no socket here; the next join connects again
            if self._unsent:
                await self._flush_unsent()
            silent = loop.time() - link.last_seen
            if silent > 2 * period:
                raise ConnectionError(f"no answer from Redis for {silent:.0f} s")
            if silent >= period:
                await link.pubsub.ping()  # the answer reaches the reader as a "pong"

    async def _read(self, link: _Link) -> None:
        pubsub = link.pubsub
        loop = asyncio.get_running_loop()
        room_prefix = key("room", "").encode()
        user_prefix = key("user", "").encode()
        prefix_len = len(room_prefix)
        count = 0
        while True:
            message = await pubsub.get_message(timeout=None)
            link.last_seen = loop.time()
            if message is None:
                continue
            count += 1
            if count % 64 == 0:
                # Buffered messages are read without a pause: let the
                # writers drain the outboxes now and then.
                await asyncio.sleep(0)
            kind = message["type"]
            try:
                if kind == "message":
                    channel = message["channel"]
                    if channel.startswith(room_prefix):
                        message_id, skip, close, text = _unpack(message["data"])
                        self.deliver(int(channel[prefix_len:]), text, message_id, skip, close)
                    elif channel.startswith(user_prefix):
                        self.deliver_user(
                            int(channel[len(user_prefix) :]), protocol.decode_json(message["data"])
                        )
                elif kind == "subscribe":
                    self._confirmed(link, message["channel"].decode(), loop)
            except Exception:  # a bad payload or a handler's bug: not the link's fault
                logger.exception("cannot deliver a %s from Redis", kind)

    def _confirmed(self, link: _Link, channel: str, loop) -> None:
        left = link.unconfirmed.get(channel, 0) - 1
        if left > 0:
            link.unconfirmed[channel] = left
            return
        link.unconfirmed.pop(channel, None)
        sub = self.subscriptions.get(channel)
        if sub is not None:
            sub.become(SUBSCRIBED, loop)

    def _lost(self) -> None:
        """The link died: frames may have been missed; every local client resyncs."""
        self.forget_caches()
        loop = self._loop
        for sub in self.subscriptions.values():
            sub.become(LOST, loop, "room subscription lost")
        for local in self.rooms.values():
            for outbox in local.values():
                outbox.close(protocol.CLOSE_RESTART)
            metrics.OUTBOX_CLOSED["resync"].inc(len(local))
        for user_id in list(self.users):
            # A kick or ban may have been lost: the handshake checks again.
            self.deliver_user(user_id, {"resync": True})

    def _failed(self) -> None:
        """Redis is unreachable: no join waits for it; they fail now and retry."""
        loop = self._loop
        for sub in self.subscriptions.values():
            sub.become(FAILED, loop, "Redis is unreachable")

    async def close(self) -> None:
        """Stop the supervisor and drop the link (tests, shutdown)."""
        task = self._supervisor
        self._supervisor = None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.forget_caches()
        self.subscriptions = {}
        self.link_state = "idle"


hub = Hub()
