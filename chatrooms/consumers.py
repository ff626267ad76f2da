"""The chat socket: thin; rules live in protocol, services, selectors, presence.

Everything reaches the socket through the process-local hub (chatrooms/hub.py),
not through the channel layer: room frames by room, control events (kick,
ban, sign-out, deactivation) by user. A consumer without a channel-layer
channel costs no receive task, no per-channel queue and no group round trips
at connect: about 8 KiB less per idle socket on Redis (docs/performance.md).

Faults (docs/reliability.md): no exception leaves a handler. Storage or
Redis down answers `unavailable` (the client resends with the same
client_id) or, at the handshake, closes with 1013; any other exception is
logged and answered `server_error`. Cleanup (hub, presence) runs from
`__call__`'s finally as well as from `disconnect`, so a socket that joined
always leaves, whatever happened.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
import uuid
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chatrooms import metrics, protocol, selectors, services, sessions
from chatrooms import writer as writer_module
from chatrooms.access import connect_cache, history_loader, refusal_reason
from chatrooms.hub import Outbox, hub
from chatrooms.presence import Conn, TooManySockets, broadcast_presence, tracker
from chatrooms.ratelimit import FrameBudget, message_allowed
from chatrooms.writer import writer

logger = logging.getLogger(__name__)

# Storage or Redis cannot do it right now; worth trying again.
UNAVAILABLE = writer_module.UNAVAILABLE
CLEANUP_TIMEOUT = 5.0  # seconds for the Redis half of cleanup; local state goes first
IN_FLIGHT = 8  # messages of one socket waiting for storage before reading waits
# Frames that wait for the socket's earlier messages to be stored first.
ORDERED_AFTER_MESSAGES = frozenset({"chat.edit", "chat.delete", "history", "read"})
# A socket's id (presence in Redis, the hub, the `skip` of its own frames):
# unique across processes by a random tag per process, short because every
# published frame carries its sender's.
PROCESS_TAG = uuid.uuid4().hex[:12]
_sockets = itertools.count(1)


class ChatConsumer(AsyncWebsocketConsumer):
    """One socket in one room: `/ws/chat/<slug>/` (docs/protocol.md)."""

    access: services.RoomAccess | None = None
    conn: Conn | None = None
    outbox: Outbox | None = None
    # No channel-layer channel for this consumer (get_channel_layer answers
    # None for an alias that is not configured): see the module docstring.
    channel_layer_alias = "chat-consumers-use-the-hub"

    # Messages the writer has not answered; the socket's own set from its first
    # message (most sockets only read: no set for them).
    storing: set[asyncio.Future] = frozenset()

    async def __call__(self, scope, receive, send):
        """Run the socket; whatever ends it (even an exception), clean up.

        AsyncConsumer.__call__ without its await_many_dispatch, which keeps a
        task per socket waiting on `receive` and makes a new one for every
        frame received: with no channel-layer channel there is one source,
        read here in turn.
        """
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            await self.cleanup()

    async def dispatch(self, message):
        """Route to the handler, without Channels' per-event close_old_connections.

        Channels runs close_old_connections in a worker thread before every
        event. This consumer never touches the ORM itself: every query runs
        in database_sync_to_async, which closes old connections around it.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- Lifecycle ---------------------------------------------------------------

    async def connect(self):
        """Refuse what docs/protocol.md refuses; else join, accept, say hello.

        Storage or Redis unreachable: accept, then close with 1013 (try
        again later), so the client reconnects instead of giving up.
        """
        try:
            await self.open()
        except UNAVAILABLE as exc:
            metrics.socket_refused(
                "unavailable",
                room=self.scope["url_route"]["kwargs"]["slug"],
                code=protocol.CLOSE_TRY_AGAIN,
                detail=f"{type(exc).__name__}: {exc}",
                level=logging.WARNING,
            )
            await self.close_after_accept(protocol.CLOSE_TRY_AGAIN)
        except Exception:
            metrics.handshake_refused("error")
            metrics.socket_log.exception(
                "socket failed to open",
                extra=metrics.socket_fields(
                    "error",
                    socket_id=getattr(self, "conn_id", ""),
                    room=self.scope["url_route"]["kwargs"]["slug"],
                    code=protocol.CLOSE_SERVER_ERROR,
                ),
            )
            await self.close_after_accept(protocol.CLOSE_SERVER_ERROR)

    async def close_after_accept(self, code: int) -> None:
        """End a socket that failed to open with `code` (the client reconnects), cleaned up."""
        self.close_code = code
        outbox = self.outbox
        if outbox is not None and outbox.held is None:
            # Hello is out: close after what is queued, by the socket's writer.
            outbox.close(code)
            if outbox.task is not None:
                await asyncio.wait({outbox.task}, timeout=CLEANUP_TIMEOUT)
        else:  # the writer has not started: closing directly cannot race it
            if not self.accepted:
                await self.accept()
            await self.close(code)
        await self.cleanup()

    accepted = False
    answered = False  # the handshake was answered: accepted, or refused with a close

    async def accept(self, subprotocol=None, headers=None):
        """Accept the handshake, remembering it: a failure after it closes, not refuses."""
        self.accepted = self.answered = True
        await super().accept(subprotocol, headers)

    async def close(self, code=None, reason=None):
        self.answered = True
        await super().close(code, reason)

    async def open(self):
        """The handshake's work: check, accept, join the hub and presence, say hello.

        Who the session signs in and their access to the room come from the
        process's connect cache when it holds both (chatrooms/access.py: no
        database), else from one database hop, which the cache may keep.
        """
        self.session_key = self.scope.get("session_key") or ""
        slug = self.scope["url_route"]["kwargs"]["slug"]
        user = connect_cache.user(self.session_key) if self.session_key else None
        access = connect_cache.access(user.id, slug) if user is not None else None
        if access is None and user is not None:  # the room's first socket may be verifying it
            access = await connect_cache.access_verified(user.id, slug)
        unverified = None
        if access is None and self.session_key:
            user, access, unverified = await connect_cache.read(self.session_key, slug, user)
        if user is None or not user.is_active or access is None:
            await self.close()  # signed out or inactive; no such room, private, banned
            await self.refused(user, slug)
            return
        try:
            await self._open(user, access, unverified)
        finally:
            if unverified is not None:
                connect_cache.settle_room(unverified)

    async def refused(self, user, slug: str) -> None:
        """Count and log a refused handshake with its reason, once the refusal is out.

        Which rule refused a signed-in user costs a read, made only now: the
        connect path itself reads nothing it does not need.
        """
        if user is None or not user.is_active:
            reason = "anonymous"
        else:
            try:
                reason = await database_sync_to_async(refusal_reason)(user_id=user.id, slug=slug)
            except Exception:  # the refusal stands; only its reason is unknown
                reason = "forbidden"
        metrics.socket_refused(reason, room=slug, user_id=getattr(user, "id", None))

    async def _open(self, user, access: services.RoomAccess, unverified) -> None:
        """open() once the user may enter: accept, join, say hello.

        `unverified`: the cache's provisional room, which this socket read
        before this process heard the room's channel; once joined it reads
        the room again for the cache (and in case it was archived or renamed
        in between).
        """
        self.scope["user"] = user
        self.access, self.user = access, user
        self.conn_id = f"{PROCESS_TAG}.{next(_sockets)}"
        metrics.sockets_open.inc()  # cleanup() decrements: it runs once access is set
        self.display_name = user.shown_name
        self.budget = FrameBudget()
        await self.accept()
        # Join the room before reading history: a message stored in between
        # is then held, and dropped by id if hello has it; never missed.
        # The server's own send (chatrooms/routing.py leaves it in the scope).
        self.outbox = Outbox(self.scope.get("server_send", self.base_send), access.room_id)
        sessions.watch(
            conn_id=self.conn_id,
            user_id=user.id,
            session_key=self.session_key,
            handler=self.on_control,
        )
        await hub.join(access.room_id, self.conn_id, self.outbox)
        if unverified is not None:
            verified = await connect_cache.verify_room(unverified, access)
            if verified is None:  # archived between the two reads: as if it were just now
                self.outbox.release(protocol.encode(protocol.closed_frame("archived")), 0)
                self.outbox.close(protocol.CLOSE_POLICY)
                return
            self.access = access = verified
        await hub.join_user(user.id, self.conn_id, self.on_control)
        self.conn = Conn(self.conn_id, access.room_id, user.username, self.display_name, user.id)
        try:
            joined, online, names = await tracker.join_listing(self.conn)  # one round trip
        except TooManySockets:
            self.conn = None  # it took no slot and no presence: nothing to give back
            await self.close_over_cap()
            return
        await self.send_hello(online, names)
        metrics.socket_opened(socket_id=self.conn_id, user_id=user.id, room=access.slug)
        if joined:
            try:
                await broadcast_presence(
                    access.room_id,
                    user.username,
                    "join",
                    skip=self.conn_id,
                    listing=(online, names),
                )
            except UNAVAILABLE:  # the others reconcile from the next `online` list
                logger.warning("presence join of %s not broadcast", user.username)

    async def close_over_cap(self) -> None:
        """Over CHAT_MAX_SOCKETS_PER_USER: `closed` too_many_sockets, then close 4429.

        Hello never went out, so the outbox's writer never started: it is
        stopped (nothing of the room follows) and the two frames go out directly.
        """
        self.outbox.stop()
        await self.send(text_data=protocol.encode(protocol.closed_frame("too_many_sockets")))
        await self.close(protocol.CLOSE_TOO_MANY_SOCKETS, reason="too_many_sockets")
        self.close_code = protocol.CLOSE_TOO_MANY_SOCKETS
        metrics.socket_refused(
            "too_many_sockets",
            room=self.access.slug,
            user_id=self.user.id,
            code=protocol.CLOSE_TOO_MANY_SOCKETS,
        )

    async def send_hello(self, online: list[str], names: dict[str, str]):
        """hello: the room, who is online, and the latest messages (or the catch-up).

        The latest page comes from the room's recent frames in the hub when
        this process has them (Hub.recent_page), else from the database; a
        catch-up (`?after=`) always reads the database.
        """
        access = self.access
        after = _positive_int(self.scope.get("query_string", b""), "after")
        page = settings.CHAT_HISTORY_PAGE
        hello = {
            "type": "hello",
            "room": {
                "slug": access.slug,
                "name": access.name,
                "topic": access.topic,
                "is_private": access.is_private,
            },
            "user": {"username": self.user.username, "display_name": self.display_name},
        }
        if after is None:
            messages, has_more = await hub.recent_page(
                access.room_id, page, history_loader(access.room_id)
            )
        else:
            catch_up = await database_sync_to_async(selectors.message_catch_up)(
                room_id=access.room_id, after=after, limit=settings.CHAT_CATCHUP_LIMIT, page=page
            )
            messages, has_more = catch_up.messages, catch_up.has_more
            hello["truncated"] = catch_up.truncated
        hello["online"], hello["names"] = online, names
        hello["messages"] = messages
        hello["has_more"] = has_more
        hello["last_read"] = access.last_read_id
        floor = max((m["id"] for m in messages if m["type"] == "chat.message"), default=0)
        self.outbox.release(protocol.encode(hello), floor)

    async def disconnect(self, code):
        """Leave the room and, on the user's last socket, the online list."""
        if self.close_code is None:
            self.close_code = code
        await self.cleanup()

    cleaned = False
    close_code: int | None = None  # as the server reported the close (websocket.disconnect)

    async def cleanup(self) -> None:
        """Leave the hub and presence; once, and never raising.

        Local state is dropped first and without awaiting, so that even a
        cancelled or failing Redis call leaves nothing behind in this
        process; what Redis keeps (presence) expires by itself.
        """
        if self.cleaned or self.access is None:
            return
        self.cleaned = True
        room_id, user, conn = self.access.room_id, self.user, self.conn
        metrics.sockets_open.dec()
        metrics.socket_closed(
            socket_id=self.conn_id, user_id=user.id, room=self.access.slug, code=self.close_code
        )
        channels = hub.detach(self.conn_id, room_id=room_id, user_id=user.id)
        sessions.unwatch(self.conn_id)
        if conn is not None:
            tracker.forget(conn)
        try:
            async with asyncio.timeout(CLEANUP_TIMEOUT):
                await hub.unsubscribe(channels)
                if conn is not None and await tracker.store.leave(conn):
                    await broadcast_presence(room_id, user.username, "leave")
        except Exception as exc:
            # Presence in Redis then expires within CHAT_PRESENCE_TIMEOUT. Debug:
            # in an outage every socket ends this way, and the hub logs the outage.
            logger.debug("socket cleanup incomplete: %s: %s", type(exc).__name__, exc)

    # --- Client frames ----------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        """Parse one frame; any error is answered and the socket stays open."""
        if text_data is None:
            self.reply(protocol.error_frame("bad_frame", "Binary frames are not supported."))
            return
        if protocol.frame_too_big(text_data):  # in UTF-8 bytes, as the servers count
            self.outbox.close(protocol.CLOSE_TOO_BIG)
            return
        event = None
        try:
            event = protocol.parse_client_text(
                text_data,
                max_chars=settings.CHAT_MAX_MESSAGE_CHARS,
                history_page=settings.CHAT_HISTORY_PAGE,
            )
            if event.type == "chat.message":
                await self.on_message(event)
            elif not self.budget.take():
                raise protocol.ProtocolError("rate_limited", "Too many frames; slow down.")
            else:
                if self.storing and event.type in ORDERED_AFTER_MESSAGES:
                    # This socket's frames take effect in the order sent.
                    await asyncio.wait(self.storing)
                await getattr(self, "on_" + event.type.replace(".", "_"))(event)
        except protocol.ProtocolError as exc:
            self.reply(exc.frame())
        except services.ServiceError as exc:
            self.reply(protocol.error_frame(exc.code, exc.detail, getattr(event, "id", None)))
        except UNAVAILABLE as exc:
            logger.warning(
                "frame not handled, storage unavailable: %s: %s", type(exc).__name__, exc
            )
            self.reply_failure("unavailable", event, "Storage is unavailable; try again.")
        except Exception:
            metrics.socket_log.exception(
                "frame handler failed on socket %s", self.conn_id, extra=self._error_fields()
            )
            self.reply_failure("server_error", event, "The server could not handle this frame.")

    def reply_failure(self, code: protocol.ErrorCode, event, detail: str) -> None:
        """An error frame naming the message (client_id) or item (id) that failed."""
        if code == "unavailable" and getattr(event, "type", "") == "read":
            return  # `read` gets no reply; the client reports its marker again later
        client_id = getattr(event, "client_id", "")
        if code == "unavailable" and client_id:
            detail = "Messages cannot be stored right now; yours will be sent again."
        self.reply(protocol.error_frame(code, detail, getattr(event, "id", None), client_id))

    def reply(self, frame: dict) -> None:
        """A frame for this socket only, in order with the room's frames."""
        if frame["type"] == "error":
            metrics.error_frame_sent(frame["code"])
        self.outbox.put(protocol.encode(frame))

    def _error_fields(self) -> dict:
        return metrics.socket_fields(
            "error", socket_id=self.conn_id, user_id=self.user.id, room=self.access.slug
        )

    async def on_message(self, event: protocol.ChatMessage):
        """Hand the message to the process's writer and go on reading.

        The writer stores it and broadcasts it with the server's username,
        id and time (the sender sees it come back); a failure is answered
        here, with the client_id. At most IN_FLIGHT messages of a socket
        wait for storage; past that, reading this socket waits too.
        """
        received = time.perf_counter()  # chat_delivery_latency_seconds starts here
        access = self.access
        if not await message_allowed(user_id=self.user.id, room_id=access.room_id):
            raise protocol.ProtocolError("rate_limited", "You are sending messages too fast.")
        while len(self.storing) >= IN_FLIGHT:
            await asyncio.wait(self.storing, return_when=asyncio.FIRST_COMPLETED)
        answer = writer.submit(
            room_id=access.room_id,
            author_id=self.user.id,
            username=self.user.username,
            display_name=self.display_name,
            body=event.message,
            client_id=event.client_id,
        )
        if not self.storing:
            self.storing = set()
        self.storing.add(answer)
        answer.add_done_callback(lambda done: self.on_stored(done, event, received))

    def on_stored(
        self, answer: asyncio.Future, event: protocol.ChatMessage, received: float = 0.0
    ) -> None:
        """The writer's answer: nothing to say when stored (the broadcast is the echo)."""
        self.storing.discard(answer)
        if answer.cancelled():
            self.reply_failure("unavailable", event, "")
            return
        exc = answer.exception()
        if exc is None:
            if received:  # stored and handed to the fan-out (docs/operations.md)
                metrics.delivery_latency.observe(time.perf_counter() - received)
            return
        if isinstance(exc, UNAVAILABLE):
            logger.warning("message not stored: %s: %s", type(exc).__name__, exc)
            self.reply_failure("unavailable", event, "Storage is unavailable; try again.")
        else:
            metrics.socket_log.error(
                "message not stored on socket %s",
                self.conn_id,
                exc_info=exc,
                extra=self._error_fields(),
            )
            self.reply_failure("server_error", event, "The server could not handle this frame.")

    async def on_chat_edit(self, event: protocol.ChatEdit):
        await database_sync_to_async(services.message_edit)(
            room_id=self.access.room_id, message_id=event.id, user=self.user, body=event.message
        )

    async def on_chat_delete(self, event: protocol.ChatDelete):
        await database_sync_to_async(services.message_delete)(
            room_id=self.access.room_id, message_id=event.id, user=self.user
        )

    async def on_typing(self, event: protocol.Typing):
        frame = protocol.typing_frame(
            user=self.user.username, display_name=self.display_name, active=event.active
        )
        await hub.publish(self.access.room_id, protocol.encode(frame), skip=self.conn_id)

    async def on_history(self, event: protocol.History):
        messages, has_more = await database_sync_to_async(selectors.message_history)(
            room_id=self.access.room_id, before=event.before, limit=event.limit
        )
        self.reply(protocol.history_frame(messages=messages, has_more=has_more))

    async def on_read(self, event: protocol.Read):
        await database_sync_to_async(services.membership_mark_read)(
            membership_id=self.access.membership_id,
            room_id=self.access.room_id,
            message_id=event.id,
        )

    async def on_ping(self, event: protocol.Ping):
        self.outbox.put(protocol.PONG)

    # --- Control events (to this user's sockets, from any process) -----------------------

    def on_control(self, event: dict) -> None:
        """Close this socket for good: kicked, banned, deactivated, signed out, left."""
        if event.get("resync"):  # an event may have been lost: re-check at the handshake
            self.outbox.close(protocol.CLOSE_RESTART)
            return
        if event.get("rekey"):  # this session lives on under a new key (password change)
            if event["session"] == self.session_key:
                self.session_key = event["rekey"]
                sessions.rekey(self.conn_id, self.session_key)
            return
        if event.get("except_session") and event["except_session"] == self.session_key:
            sessions.hold(self.conn_id)  # the session that changed the password: kept
            return
        if event.get("session") and event["session"] != self.session_key:
            return  # another browser of the same user signed out
        if event.get("room") and event["room"] != self.access.room_id:
            return  # kicked from, banned from or left another room
        self.reply(protocol.closed_frame(event["reason"]))
        self.outbox.close(protocol.CLOSE_POLICY)


def _positive_int(query_string: bytes, name: str) -> int | None:
    values = parse_qs(query_string.decode("latin-1")).get(name)
    if not values or not re.fullmatch(r"[0-9]{1,19}", values[0]):
        return None
    value = int(values[0])
    return value if 1 <= value <= protocol.MAX_ID else None
