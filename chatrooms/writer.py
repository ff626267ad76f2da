"""Group commit: one task per process stores every waiting chat message at once.

Sockets hand their messages to `writer.submit` and go on reading; the one
writer task of the process takes everything waiting, stores it, publishes
it, then answers the senders, and meanwhile the next batch fills (no timer:
a batch is whatever arrived while the previous one was in flight). On
PostgreSQL a batch costs, whatever its size:

1. one `pg_advisory_lock` per room of the batch, in ascending room order
   (two processes never deadlock), on the writer's own connection;
2. one multi-row `INSERT ... ON CONFLICT DO NOTHING RETURNING`, committed
   on its own (autocommit): a repeated client_id stores nothing and its
   stored message is looked up and broadcast again, as before;
3. one pipelined PUBLISH of the batch in id order (Hub.publish_stored),
   waiting until Redis has it;
4. `pg_advisory_unlock_all()`.

Why the lock: ids come from one sequence, so without it two processes can
commit a room's ids out of order (100 commits after 101 was broadcast) and
a client that reconnects with `after=101` never sees 100. Under the lock a
room's ids are taken, committed and published by one process at a time, so
per room id order = commit order = publish order = the order every socket
receives, on every process (Redis delivers one connection's messages in
order, and each process reads its subscription with one reader). Catch-up
by id is then exact. A PUBLISH that fails is retried for ORDER_HOLD
seconds with the locks still held, so that no other process overtakes it;
past that the locks go (a room cannot stay blocked by a process cut off
from Redis) and the frames wait in the hub for Redis (docs/reliability.md).

Other databases (SQLite, the embedded default: one process by design) store
the batch through the ORM in one transaction on Django's database thread;
one writer per process already gives id order there.

Nothing changes for senders: stored before broadcast, idempotent by
client_id, and a failure answers each sender of the batch with its own
error (the consumer turns it into an `unavailable` frame with the
client_id, and the client resends).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import psycopg
from channels.db import database_sync_to_async
from django.db import DatabaseError, InterfaceError, OperationalError, connections, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from chatrooms import metrics, protocol
from chatrooms.hub import HubUnavailable, hub

logger = logging.getLogger(__name__)

# The database or Redis cannot do it now (down, cut, a lock not granted in
# time): a batch that fails so fails as a whole, and its senders resend.
TRANSIENT = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    OperationalError,
    InterfaceError,
    RedisError,
    HubUnavailable,
    OSError,
)
# What a socket answers with `unavailable` (any other failure: `server_error`).
UNAVAILABLE = (*TRANSIENT, DatabaseError)

BATCH_MAX = 500  # messages stored by one statement
ORDER_HOLD = 10.0  # seconds a room's order lock waits for a failed PUBLISH to go out
LOCK_TIMEOUT_MS = 5000  # a batch waits this long for another process's room lock
STATEMENT_TIMEOUT = 5.0  # seconds for any other step with the database (then: unavailable)
# The advisory lock space of room order: pg_advisory_lock(ORDER_LOCKS, room_id).
ORDER_LOCKS = 0x43484154  # "CHAT"


@dataclass(slots=True)
class Pending:
    """One message waiting to be stored, and its sender's answer."""

    room_id: int
    author_id: int
    username: str
    display_name: str
    body: str
    client_id: str
    answer: asyncio.Future = field(repr=False)


@dataclass(slots=True)
class Stored:
    """A message's frame as broadcast, and whether this attempt created it."""

    frame: dict[str, Any]
    created: bool


class Writer:
    """The process's group-commit writer (module docstring)."""

    def __init__(self) -> None:
        self._waiting: deque[Pending] = deque()
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pg = None  # psycopg.AsyncConnection
        self._pg_key: tuple | None = None
        self._single = 0  # messages to store one by one after a failed batch

    def submit(
        self,
        *,
        room_id: int,
        author_id: int,
        username: str,
        display_name: str,
        body: str,
        client_id: str = "",
    ) -> asyncio.Future:
        """Queue a message; the future answers a Stored, or raises what failed."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new loop (tests): start afresh
            self._reset(loop)
        answer = loop.create_future()
        self._waiting.append(
            Pending(room_id, author_id, username, display_name, body, client_id, answer)
        )
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        return answer

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        self._close_pg()
        self._waiting.clear()
        self._task = None
        self._loop = loop

    def _close_pg(self) -> None:
        if self._pg is not None:
            # Closed without awaiting: the connection may belong to a loop
            # that is gone; the server ends the session and its locks.
            with contextlib.suppress(Exception):  # already broken
                self._pg.pgconn.finish()
        self._pg = self._pg_key = None

    async def close(self) -> None:
        """Close the database connection (tests, shutdown)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=5)
        self._close_pg()

    async def _run(self) -> None:
        waiting = self._waiting
        while waiting:
            size = BATCH_MAX
            if self._single:
                self._single, size = self._single - 1, 1
            batch = [waiting.popleft() for _ in range(min(len(waiting), size))]
            try:
                results = await self._store(batch)
            except BaseException as exc:
                if len(batch) > 1 and not isinstance(exc, (*TRANSIENT, asyncio.CancelledError)):
                    # Not the database's state but (say) one bad message:
                    # store them one by one, so that only that one fails.
                    logger.warning("a batch of %d failed (%s); storing one by one", len(batch), exc)
                    for item in reversed(batch):
                        waiting.appendleft(item)
                    self._single = len(batch)
                    continue
                for item in batch:
                    if not item.answer.done():
                        item.answer.set_exception(exc)
                        item.answer.exception()  # retrieved: the sender may be gone
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            created = 0
            for item, stored in zip(batch, results, strict=True):
                created += stored.created
                if not item.answer.done():
                    item.answer.set_result(stored)
            metrics.messages_stored.inc(created)

    async def _store(self, batch: list[Pending]) -> list[Stored]:
        if connections["default"].vendor == "postgresql":
            return await self._store_postgresql(batch)
        results = await database_sync_to_async(_store_orm)(batch)
        await hub.publish_stored(_publishable(results, batch), ORDER_HOLD)
        return results

    # --- PostgreSQL --------------------------------------------------------------

    async def _connection(self):
        settings_dict = connections["default"].settings_dict
        key = tuple(settings_dict.get(k) for k in ("HOST", "PORT", "NAME", "USER", "PASSWORD"))
        if self._pg is not None and (self._pg.closed or self._pg.broken or self._pg_key != key):
            self._close_pg()
        if self._pg is None:
            options = settings_dict.get("OPTIONS", {})
            params = {
                "dbname": settings_dict["NAME"],
                "user": settings_dict.get("USER") or None,
                "password": settings_dict.get("PASSWORD") or None,
                "host": settings_dict.get("HOST") or None,
                "port": settings_dict.get("PORT") or None,
                "connect_timeout": options.get("connect_timeout", 2),
            }
            params = {k: v for k, v in params.items() if v is not None}
            self._pg = await psycopg.AsyncConnection.connect(
                autocommit=True, prepare_threshold=None, **params
            )
            # The server drops this session (and its order locks) within
            # about 10 s when this end vanishes without closing (a cut or a
            # frozen host), instead of the system's two hours.
            await self._pg.execute(
                "SELECT set_config('lock_timeout', %s, false),"
                " set_config('tcp_keepalives_idle', '5', false),"
                " set_config('tcp_keepalives_interval', '2', false),"
                " set_config('tcp_keepalives_count', '2', false)",
                (str(LOCK_TIMEOUT_MS),),
            )
            self._pg_key = key
        return self._pg

    async def _store_postgresql(self, batch: list[Pending]) -> list[Stored]:
        rooms = sorted({item.room_id for item in batch})
        try:
            async with asyncio.timeout(STATEMENT_TIMEOUT):
                pg = await self._connection()
            async with asyncio.timeout(LOCK_TIMEOUT_MS / 1000 + STATEMENT_TIMEOUT):
                await pg.execute(
                    "SELECT pg_advisory_lock(%s::int, r::int) FROM unnest(%s::bigint[]) AS r",
                    (ORDER_LOCKS, rooms),
                )
            async with asyncio.timeout(STATEMENT_TIMEOUT):
                results = await _insert(pg, batch)
        except BaseException:
            # Unknown state (a cut connection may still hold the locks until
            # the server notices): a fresh connection for the next batch.
            self._close_pg()
            raise
        # Stored: from here on, nothing turns the answers into failures.
        try:
            published = await hub.publish_stored(_publishable(results, batch), ORDER_HOLD)
            if not published:
                logger.warning(
                    "order locks of %d room(s) released with frames still waiting for Redis",
                    len(rooms),
                )
        finally:
            try:
                async with asyncio.timeout(STATEMENT_TIMEOUT):
                    await pg.execute("SELECT pg_advisory_unlock_all()")
            except Exception as exc:  # the session's end releases them
                logger.warning("order locks not released (%s); reconnecting", exc)
                self._close_pg()
        return results


def _publishable(results: list[Stored], batch: list[Pending]) -> list[tuple[int, str, int]]:
    """(room, frame, id) of each result, in id order (a repeat's stored id included)."""
    items = [
        (item.room_id, protocol.encode(result.frame), result.frame["id"])
        for item, result in zip(batch, results, strict=True)
    ]
    items.sort(key=lambda entry: entry[2])
    return items


# The SQL below names Message's table and columns (a test checks them).
async def _insert(pg, batch: list[Pending]) -> list[Stored]:
    """Store the batch with one statement; answer repeats with their stored message."""
    now = timezone.now()
    cursor = await pg.execute(
        "INSERT INTO chatrooms_message (room_id, author_id, body, client_id, created_at)"
        " SELECT r, a, b, c, %s"
        " FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[])"
        "   WITH ORDINALITY AS t(r, a, b, c, n)"
        " ORDER BY n"
        " ON CONFLICT DO NOTHING"
        " RETURNING id, room_id, author_id, client_id",
        (
            now,
            [item.room_id for item in batch],
            [item.author_id for item in batch],
            [item.body for item in batch],
            [item.client_id for item in batch],
        ),
    )
    rows = sorted(await cursor.fetchall())  # by id: the order of the batch
    results: list[Stored | None] = [None] * len(batch)
    unclaimed = deque(rows)
    repeats: list[int] = []
    for index, item in enumerate(batch):
        if unclaimed and _is_row_of(unclaimed[0], item):
            message_id = unclaimed.popleft()[0]
            results[index] = Stored(_frame(item, message_id, now, item.body, None), True)
        else:
            repeats.append(index)
    if unclaimed:  # cannot happen: every row inserted answers one message
        raise RuntimeError("group commit: inserted rows do not match the batch")
    if repeats:
        await _answer_repeats(pg, batch, repeats, results)
    return results  # type: ignore[return-value]


def _is_row_of(row, item: Pending) -> bool:
    _id, room_id, author_id, client_id = row
    return room_id == item.room_id and author_id == item.author_id and client_id == item.client_id


async def _answer_repeats(pg, batch, repeats: list[int], results: list) -> None:
    """A repeated client_id: the stored message again (or its deletion)."""
    keys = {(batch[i].room_id, batch[i].author_id, batch[i].client_id) for i in repeats}
    if any(not client_id for _r, _a, client_id in keys):
        raise RuntimeError("group commit: a message without client_id was not stored")
    cursor = await pg.execute(
        "SELECT room_id, author_id, client_id, id, body, created_at, edited_at, deleted_at"
        " FROM chatrooms_message WHERE (room_id, author_id, client_id) IN"
        " (SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[]))",
        ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
    )
    stored = {tuple(row[:3]): row[3:] for row in await cursor.fetchall()}
    for index in repeats:
        item = batch[index]
        found = stored.get((item.room_id, item.author_id, item.client_id))
        if found is None:
            raise RuntimeError("group commit: a repeated client_id has no stored message")
        message_id, body, created_at, edited_at, deleted_at = found
        if deleted_at is not None:  # a retry must not resurrect a deleted message
            results[index] = Stored(protocol.delete_frame(id=message_id), False)
        else:
            results[index] = Stored(_frame(item, message_id, created_at, body, edited_at), False)


def _frame(item: Pending, message_id: int, ts, body: str, edited_at) -> dict[str, Any]:
    return protocol.message_frame(
        id=message_id,
        user=item.username,
        display_name=item.display_name,
        message=body,
        ts=ts,
        client_id=item.client_id,
        edited_at=edited_at,
    )


# --- Other databases ---------------------------------------------------------------


def _store_orm(batch: list[Pending]) -> list[Stored]:
    """The batch in one transaction through the ORM (Django's database thread)."""
    from chatrooms.services.messages import message_store

    with transaction.atomic():
        return [
            Stored(
                *message_store(
                    room_id=item.room_id,
                    author_id=item.author_id,
                    username=item.username,
                    display_name=item.display_name,
                    body=item.body,
                    client_id=item.client_id,
                )
            )
            for item in batch
        ]


writer = Writer()
