"""What a handshake must know, kept in the process: so that most connects
read nothing from the database.

Three tables, each bounded (CHAT_CONNECT_CACHE_SIZE entries, least recently
used first out) and each entry read again after CHAT_CONNECT_CACHE_SECONDS
(default 30; 0 turns the cache off):

- sessions: session key -> user id, and the session's own expiry;
- users: user id -> the User, and the user's memberships (room id ->
  membership id, role, last read), read all at once, so that the user's
  next sockets in other rooms find theirs;
- rooms: slug -> the live room's id, name, topic and privacy.

Exact, not merely fresh: everything that makes an entry wrong already
publishes an event on a Redis channel that this process hears while it is
subscribed to it, and the hub hands each event to this cache before any
socket (Hub.deliver_user, Hub.deliver):

- on the user's channel: sign-out, password change or reset, deactivation,
  kick, ban, leave (they close sockets), a role change, a changed profile
  and a deleted user (`invalidate` events, for the caches only). Any event
  drops everything cached of the user, on every process that has it;
- on the room's channel: a rename (`room` frame) or the archiving (a
  closing frame) drops the room.

So an entry is only kept while this process hears its channel:

- it is stored only if its channel was subscribed (confirmed by Redis)
  before the database read began and heard nothing since, so that no event
  can fall between the read and the subscription. A user's first socket
  here reads the database and caches nothing; the next one caches;
- it is used only while the same subscription stands: when the last local
  socket of the user or room goes, or the link to Redis breaks (the hub
  then resets every cache: events may have been lost), it is gone.

What the cache lacks is read in one hop (`connect_read`), one per session
at a time: the session's sockets opening meanwhile take their answer from
it, as if each had read then (`ConnectCache.read`). A room read before its
channel was heard is provisional: the socket that read it reads it again
once joined (`verify_room`), and the room's other new sockets wait for
that rather than each reading it (`access_verified`).

Without Redis (one process) every event reaches the hub directly, so the
subscription rule does not apply. What no event announces (a session
deleted by staff, a row changed in the shell, a read marker moved by
another process) is seen again within CHAT_CONNECT_CACHE_SECONDS; so is
anything after an event lost in transit without the link breaking. The
session's expiry is checked on every use.

Everything here runs on the event loop, but for `connect_read` (the database
thread) and `note_read` (called from the database thread, a single
attribute write).
"""

from __future__ import annotations

import asyncio
import copy
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, SESSION_KEY, get_user_model, load_backend
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import ValidationError
from django.db import connection

from chatrooms import selectors, services, sessions
from chatrooms.hub import SUBSCRIBED, Subscription, _channel, _user_channel, hub
from chatrooms.models import Membership, Room
from chatrooms.services.rooms import RoomAccess

VERIFY_WAIT = 5.0  # seconds a socket waits for its room's first socket to verify the room


@dataclass(slots=True)
class Member:
    """The user's place in one room (never a banned one)."""

    membership_id: int
    role: str
    last_read_id: int


@dataclass(frozen=True, slots=True)
class RoomFacts:
    """A live room as hello shows it."""

    room_id: int
    slug: str
    name: str
    topic: str
    is_private: bool


@dataclass(slots=True)
class _Session:
    user_id: int
    expires: float  # the session's own expiry (epoch seconds; inf: the engine keeps it)
    until: float  # read again after this (loop time)


@dataclass(slots=True)
class _User:
    user: Any
    members: dict[int, Member]
    sub: Subscription | None
    until: float
    sessions: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Room:
    facts: RoomFacts
    sub: Subscription | None
    until: float
    # Provisional (read before the room's channel was heard): the socket that
    # read it verifies it once joined (verify_room); others wait for that.
    verified: asyncio.Future | None = None


@dataclass(slots=True)
class Read:
    """What one connect read from the database (`connect_read`, in the database thread)."""

    user: Any = None  # the signed-in, active user; None: refused
    from_session: bool = False  # the user was read from the session now
    session_expires: float = math.inf
    access: RoomAccess | None = None  # None: refused (no room, private, banned, archived)
    members: dict[int, Member] | None = None  # all of the user's (not banned), by room id
    rooms: dict[str, RoomAccess] = field(default_factory=dict)  # the same, live rooms, by slug


MAX_BATCH = 200  # connects read in one hop at most


@dataclass(slots=True)
class Batch:
    """What one database hop read for several connects: three queries for all of them.

    sessions: session key -> (data or None, expiry); users: user id -> the user
    (or None: no such row), for the sessions signed in through ModelBackend
    (allauth's backend is one); members: user id -> the user's membership rows.
    """

    sessions: dict[str, tuple[dict | None, float]]
    users: dict[Any, Any]
    members: dict[Any, list[tuple]]

    @classmethod
    def read(cls, requests: list[dict]) -> Batch:
        keys = [r["session_key"] for r in requests if r.get("user") is None]
        found = sessions.read_sessions_expiring(keys) if keys else {}
        ids = {r["user"].pk for r in requests if r.get("user") is not None}
        wanted = set()
        for data, _ in found.values():
            user_id, backend = _session_user(data)
            if backend is not None and type(backend).get_user is ModelBackend.get_user:
                wanted.add(user_id)
        users = _users_by_id(wanted)
        ids.update(user_id for user_id, user in users.items() if user is not None)
        members: dict[Any, list[tuple]] = {}
        if ids:
            ids_ = list(ids)
            for row in _select(_memberships_sql() + _placeholders(len(ids_)), ids_):
                members.setdefault(row[0], []).append(row[1:])
        return cls(found, users, members)


def connect_reads(requests: list[dict]) -> list[Read | Exception]:
    """connect_read for each request (its keyword arguments), in one hop of three
    queries for all (Batch) and a query more only for a public room joined now.
    A request that fails gets its exception in its place."""
    batch = Batch.read(requests)
    results: list[Read | Exception] = []
    for request in requests:
        try:
            results.append(connect_read(**request, batch=batch))
        except Exception as exc:  # noqa: BLE001 - handed to that request's socket
            results.append(exc)
    return results


def connect_read(*, session_key: str, slug: str, user=None, batch: Batch | None = None) -> Read:
    """The database's answer for a connect, in one hop: the session's user (unless
    `user` is given), the user's access to the room (joining a public one), and
    every membership of the user with its live room, for the cache and for the
    session's other sockets opening at the same moment.

    Plain SQL on Django's connection rather than the ORM, and for every
    connect waiting at once (`connect_reads`): in a connect storm these reads
    run one after another on the process's one database thread, where the
    ORM's query building cost about 1 ms of CPU per query, five times the
    query itself, and the hellos waited behind them.
    """
    if batch is None:
        batch = Batch.read([{"session_key": session_key, "user": user}])
    result = Read(user=user)
    if user is None:
        data, result.session_expires = batch.sessions.get(session_key, (None, math.inf))
        result.user = user = user_for_session(data, batch.users)
        result.from_session = True
        if user is None:
            return result
    result.members = {}
    for (
        room_id,
        membership_id,
        role,
        last_read,
        slug_,
        name,
        topic,
        private,
        archived,
    ) in batch.members.get(user.pk, ()):
        result.members[room_id] = Member(membership_id, role, last_read)
        if archived is None:
            result.rooms[slug_] = RoomAccess(
                room_id, slug_, name, topic, private, membership_id, role, last_read
            )
    result.access = result.rooms.get(slug)
    if result.access is None:  # not a member (yet), banned, no such room, archived
        result.access = access = services.room_enter(user=user, slug=slug)
        if access is not None:  # joined a public room now
            result.members[access.room_id] = Member(
                access.membership_id, access.role, access.last_read_id
            )
            result.rooms[access.slug] = access
    return result


def refusal_reason(*, user_id: int, slug: str) -> str:
    """Why a signed-in user may not open the room's socket: not_found, banned or forbidden.

    Read only after a refusal (chatrooms/metrics.py counts it), by the rules
    of services.room_enter: no live room with the slug, a ban, else a private
    room without membership.
    """
    room = selectors.room_for_slug(slug)
    if room is None:
        return "not_found"
    membership = selectors.membership_for(user_id=user_id, room_id=room.id)
    if membership is not None and membership.is_banned:
        return "banned"
    return "forbidden"


def _select(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _placeholders(n: int) -> str:
    """ "(%s, %s, ...)": a list of n parameters, for IN (any database)."""
    return "(" + ", ".join(["%s"] * n) + ")"


@cache
def _memberships_sql() -> str:
    """Users' memberships (not banned) with their rooms, as connect_read reads them."""
    q = connection.ops.quote_name
    m, r = Membership._meta, Room._meta
    mc, rc = (lambda name: q(m.get_field(name).column)), (lambda name: q(r.get_field(name).column))
    columns = (
        f"m.{mc('user')}, m.{mc('room')}, m.{mc('id')}, m.{mc('role')}, m.{mc('last_read_id')},"
        f" r.{rc('slug')}, r.{rc('name')}, r.{rc('topic')}, r.{rc('is_private')},"
        f" r.{rc('archived_at')}"
    )
    tables = f"{q(m.db_table)} m JOIN {q(r.db_table)} r ON r.{rc('id')} = m.{mc('room')}"
    where = f"NOT m.{mc('is_banned')} AND m.{mc('user')} IN "
    return f"SELECT {columns} FROM {tables} WHERE {where}"  # noqa: S608 - quoted identifiers


@cache
def _users_sql() -> tuple[str, list[str]]:
    """Users' rows by primary key, every concrete field (for Model.from_db), but the list."""
    q = connection.ops.quote_name
    opts = get_user_model()._meta
    fields = opts.concrete_fields
    columns = ", ".join(q(f.column) for f in fields)
    table, pk = q(opts.db_table), q(opts.pk.column)
    sql = f"SELECT {columns} FROM {table} WHERE {pk} IN "  # noqa: S608 - quoted identifiers
    return sql, [f.attname for f in fields]


def _users_by_id(ids: set) -> dict:
    """ModelBackend.get_user's users by id, before its is_active check, in one plain query
    (connect_read says why); None for an id with no row."""
    if not ids:
        return {}
    sql, attnames = _users_sql()
    ids_ = list(ids)
    users = dict.fromkeys(ids_)
    model, alias, pk = (
        get_user_model(),
        connection.alias,
        attnames.index(get_user_model()._meta.pk.attname),
    )
    for row in _select(sql + _placeholders(len(ids_)), ids_):
        users[row[pk]] = model.from_db(alias, attnames, row)
    return users


def _session_user(data: dict | None):
    """(user id, its backend) that the session data names, or (None, None)."""
    if not data:
        return None, None
    try:
        user_id = get_user_model()._meta.pk.to_python(data[SESSION_KEY])
        backend_path = data[BACKEND_SESSION_KEY]
    except (KeyError, ValidationError):
        return None, None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None, None
    return user_id, load_backend(backend_path)


def user_for_session(data: dict | None, users: dict | None = None):
    """The active user the session signs in, checked as django.contrib.auth.get_user does.

    `users`: users already read by id (Batch), for a ModelBackend session.
    """
    user_id, backend = _session_user(data)
    if backend is None:
        return None
    if users is not None and user_id in users:  # ModelBackend.get_user, read with the batch
        user = users[user_id]
        if user is not None and not backend.user_can_authenticate(user):
            user = None
    else:
        user = backend.get_user(user_id)  # None when inactive
    if user is None or sessions.verdict(data, user, user.pk):
        return None
    return user


class GroupRead:
    """Connect reads waiting for the database, all read in the next hop (connect_reads).

    Like the writer's group commit: while one hop runs, the connects that
    miss the cache wait together and go in the next one (MAX_BATCH at most),
    so a storm of connects costs a few hops of three queries each, and the
    database thread stays free for the hellos' history reads in between.
    """

    def __init__(self) -> None:
        self.waiting: list[tuple[dict, asyncio.Future]] = []
        self.task: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def read(self, **request) -> Read:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:  # a new event loop (tests): nothing of the old one goes on
            self.loop, self.waiting, self.task = loop, [], None
        future = loop.create_future()
        self.waiting.append((request, future))
        if self.task is None:
            self.task = loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
                try:
                    results = await database_sync_to_async(connect_reads)([r for r, _ in batch])
                except Exception as exc:  # noqa: BLE001 - every connect of the hop gets it
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its socket went away meanwhile
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self.task = None


class ConnectCache:
    """The process's sessions, users with their memberships, and rooms (module docstring)."""

    def __init__(self) -> None:
        self.sessions: OrderedDict[str, _Session] = OrderedDict()
        self.users: OrderedDict[int, _User] = OrderedDict()
        self.rooms: OrderedDict[str, _Room] = OrderedDict()
        self.room_slugs: dict[int, str] = {}
        self.memberships: dict[int, Member] = {}
        self.inflight: dict[str, asyncio.Future] = {}  # session key -> the read running for it
        self.reads = GroupRead()
        self.room_reads: dict[str, asyncio.Future] = {}  # slug -> a read of it running now
        # Channel -> loop time it last carried an event; reset: when all was dropped.
        self.touched: dict[str, float] = {}
        self.reset_at = -math.inf

    # --- Settings --------------------------------------------------------------------

    @property
    def seconds(self) -> float:
        return float(getattr(settings, "CHAT_CONNECT_CACHE_SECONDS", 30))

    @property
    def size(self) -> int:
        return int(getattr(settings, "CHAT_CONNECT_CACHE_SIZE", 10_000))

    # --- Lookups ---------------------------------------------------------------------

    def user(self, session_key: str):
        """The session's user, or None when not cached (or no longer valid).

        One instance shared by the user's sockets in this process, read-only
        (nothing on the socket path saves or changes a user): a copy per socket
        cost about 1 KiB per idle socket. A change to the user drops the
        entry; sockets opened later get the new instance."""
        entry = self._user_entry(session_key)
        return entry.user if entry is not None else None

    def access(self, user_id: int, slug: str) -> RoomAccess | None:
        """The user's access to the room by slug, when both are cached; None: ask the database."""
        room = self.rooms.get(slug)
        entry = self.users.get(user_id)
        if room is None or entry is None:
            return None
        now = clock()
        if not self._valid(entry.sub, _user_channel(user_id), entry.until, now):
            self._drop_user(user_id)
            return None
        if room.verified is not None:
            return None  # provisional: see access_verified
        if not self._valid(room.sub, _channel(room.facts.room_id), room.until, now):
            self._drop_room(room.facts.room_id)
            return None
        member = entry.members.get(room.facts.room_id)
        if member is None:  # absence proves nothing: not read yet, or joined since
            return None
        self.rooms.move_to_end(slug)
        facts = room.facts
        return RoomAccess(
            room_id=facts.room_id,
            slug=facts.slug,
            name=facts.name,
            topic=facts.topic,
            is_private=facts.is_private,
            membership_id=member.membership_id,
            role=member.role,
            last_read_id=member.last_read_id,
        )

    async def access_verified(self, user_id: int, slug: str) -> RoomAccess | None:
        """access(), after waiting (bounded) for a provisional room to be verified.

        A room's first sockets here all miss: its channel is not heard yet,
        so what they read may not be kept. Rather than each reading it, the
        later ones wait for the first to verify it (VERIFY_WAIT at most).
        """
        if user_id not in self.users:
            return None
        try:
            async with asyncio.timeout(VERIFY_WAIT):
                reading = self.room_reads.get(slug)
                if slug not in self.rooms and reading is not None:
                    await asyncio.shield(reading)  # another socket is reading the room now
                room = self.rooms.get(slug)
                if room is not None and room.verified is not None:
                    await asyncio.shield(room.verified)
        except TimeoutError:
            return None
        return self.access(user_id, slug)

    async def verify_room(self, room: _Room, access: RoomAccess) -> RoomAccess | None:
        """After the socket that read `room` (provisional: remember) joined it: read it again.

        Now that its channel is heard, this read is kept; the room's waiting
        sockets go on from it. Returns the socket's access with the room as
        it is now (a rename in between shows), or None: archived meanwhile.
        """
        try:
            started = clock()
            found = await database_sync_to_async(selectors.room_for_slug)(access.slug)
            if found is None or found.id != access.room_id:
                return None
            facts = RoomFacts(found.id, found.slug, found.name, found.topic, found.is_private)
            sub = self._keepable(_channel(found.id), started)
            future = room.verified
            if sub is not False and future is not None and self.rooms.get(access.slug) is room:
                room.facts, room.sub, room.until = facts, sub, clock() + self.seconds
                room.verified = None
                if not future.done():
                    future.set_result(True)
            return replace(access, name=facts.name, topic=facts.topic, is_private=facts.is_private)
        finally:
            self.settle_room(room)

    def settle_room(self, room: _Room) -> None:
        """A provisional room that was not verified goes; its waiters read for themselves."""
        future = room.verified
        if future is None:
            return
        if self.rooms.get(room.facts.slug) is room:
            self._drop_room(room.facts.room_id)
        room.verified = None
        if not future.done():
            future.set_result(False)

    async def read(self, session_key: str, slug: str, user=None):
        """What the cache lacked, from the database: (user, access, provisional room).

        One read per session at a time: the session's sockets that open while
        it runs (a browser restoring its tabs, a reconnect storm) take their
        answer from it, as if each had read at that moment, and read for
        themselves only a room it did not cover. Then `remember` keeps what
        may be kept; the provisional room (if any) is the caller's to verify.
        """
        flight = self.inflight.get(session_key)
        if flight is not None:
            shared = await asyncio.shield(flight)
            if shared is not None:
                if shared.user is None:
                    return None, None, None
                access = shared.rooms.get(slug)
                if access is not None:
                    return shared.user, access, None
                user = shared.user  # a room it did not cover: read that
        leader = session_key not in self.inflight
        future = asyncio.get_running_loop().create_future()
        if leader:
            self.inflight[session_key] = future
        room_read = None
        if slug not in self.room_reads:  # the room's other new sockets wait for this read
            room_read = self.room_reads[slug] = asyncio.get_running_loop().create_future()
        result = None
        try:
            started = clock()
            result = await self.reads.read(session_key=session_key, slug=slug, user=user)
            provisional = self.remember(session_key=session_key, started=started, result=result)
        finally:
            if leader:
                del self.inflight[session_key]
                future.set_result(result)  # None (failed): the others read for themselves
            if room_read is not None:
                del self.room_reads[slug]
                room_read.set_result(None)
        return result.user, result.access, provisional

    def _user_entry(self, session_key: str) -> _User | None:
        session = self.sessions.get(session_key)
        if session is None:
            return None
        now = clock()
        entry = self.users.get(session.user_id)
        if (
            entry is None
            or session.until <= now
            or session.expires <= time.time()
            or not self._valid(entry.sub, _user_channel(session.user_id), entry.until, now)
        ):
            self._drop_user(session.user_id)
            self.sessions.pop(session_key, None)
            return None
        self.sessions.move_to_end(session_key)
        self.users.move_to_end(session.user_id)
        return entry

    def _valid(self, sub: Subscription | None, channel: str, until: float, now: float) -> bool:
        if until <= now:
            return False
        if not hub.uses_redis:
            return True
        current = hub.subscriptions.get(channel)
        return current is not None and current is sub and current.state == SUBSCRIBED

    def _heard(self, channel: str) -> Subscription | None | bool:
        """The subscription that makes `channel`'s events reach us now (None: no Redis
        needed); False when they might not."""
        if not hub.uses_redis:
            return None
        sub = hub.subscriptions.get(channel)
        return sub if sub is not None and sub.state == SUBSCRIBED else False

    def _keepable(self, channel: str, started: float) -> Subscription | None | bool:
        """The subscription under which a read begun at `started` may be kept; False: not."""
        if (
            self.seconds <= 0
            or self.reset_at >= started
            or self.touched.get(channel, -math.inf) >= started
        ):
            return False
        sub = self._heard(channel)
        if sub is False or (sub is not None and sub.since >= started):
            return False  # subscribed after the read began: an event may fall in between
        return sub

    # --- Storing what a connect read ---------------------------------------------------

    def remember(self, *, session_key: str, started: float, result: Read) -> _Room | None:
        """Keep what `result` (a read begun at loop time `started`) may be kept of.

        Returns the provisional room the caller must verify (verify_room) once
        joined, or settle (settle_room) if it never gets there.
        """
        user = result.user
        if user is None:
            return None
        until = clock() + self.seconds
        access = result.access
        sub = self._keepable(_user_channel(user.pk), started)
        if sub is not False:
            entry = self.users.get(user.pk)
            if entry is not None and entry.sub is not sub:
                self._drop_user(user.pk)  # kept under a subscription that is gone
                entry = None
            if entry is None or result.members is not None:
                members = result.members or {}
                if entry is None:
                    entry = self.users[user.pk] = _User(copy.copy(user), members, sub, until)
                else:  # the user's sessions stay: same subscription, nothing heard since
                    for member in entry.members.values():
                        self.memberships.pop(member.membership_id, None)
                    entry.user, entry.members, entry.until = copy.copy(user), members, until
                self.memberships.update((m.membership_id, m) for m in members.values())
            if access is not None and access.room_id not in entry.members:
                member = Member(access.membership_id, access.role, access.last_read_id)
                entry.members[access.room_id] = self.memberships[member.membership_id] = member
            if result.from_session and session_key and result.session_expires > time.time():
                self.sessions[session_key] = _Session(user.pk, result.session_expires, until)
                entry.sessions.add(session_key)
            self._bound()
        if access is None or self.seconds <= 0:
            return None
        facts = RoomFacts(access.room_id, access.slug, access.name, access.topic, access.is_private)
        room_sub = self._keepable(_channel(access.room_id), started)
        current = self.rooms.get(access.slug)
        provisional = None
        if room_sub is not False:
            if current is not None:
                self.settle_room(current)
                self._drop_room(access.room_id)
            self.rooms[access.slug] = _Room(facts, room_sub, until)
        elif current is None:
            future = asyncio.get_running_loop().create_future()
            provisional = self.rooms[access.slug] = _Room(facts, None, until, future)
        else:
            return None  # another socket of the room verifies it
        self.room_slugs[access.room_id] = access.slug
        self._bound()
        return provisional

    def note_read(self, membership_id: int, message_id: int) -> None:
        """A read marker moved forward in this process (from the database thread)."""
        member = self.memberships.get(membership_id)
        if member is not None and message_id > member.last_read_id:
            member.last_read_id = message_id

    # --- What the hub hears (CacheListener) ---------------------------------------------

    def user_changed(self, user_id: int, event: dict) -> None:
        self.touched[_user_channel(user_id)] = clock()
        self._drop_user(user_id)

    def room_changed(self, room_id: int) -> None:
        self.touched[_channel(room_id)] = clock()
        self._drop_room(room_id)

    def reset(self) -> None:
        self.sessions.clear()
        self.users.clear()
        self.rooms.clear()
        self.room_slugs.clear()
        self.memberships.clear()
        self.touched.clear()
        self.reset_at = clock()

    def forget_user(self, user_id: int) -> None:
        """Drop what is cached of the user here (the session check found a session ended)."""
        self.user_changed(user_id, {})

    # --- Bounds ----------------------------------------------------------------------

    def _drop_user(self, user_id: int) -> None:
        entry = self.users.pop(user_id, None)
        if entry is None:
            return
        for key in entry.sessions:
            self.sessions.pop(key, None)
        for member in entry.members.values():
            if self.memberships.get(member.membership_id) is member:
                del self.memberships[member.membership_id]

    def _drop_room(self, room_id: int) -> None:
        slug = self.room_slugs.pop(room_id, None)
        if slug is not None:
            self.rooms.pop(slug, None)  # a provisional one's waiters hear from its verifier

    def _bound(self) -> None:
        size = max(self.size, 1)
        while len(self.sessions) > size:
            key, session = self.sessions.popitem(last=False)
            entry = self.users.get(session.user_id)
            if entry is not None:
                entry.sessions.discard(key)
        while len(self.users) > size:
            self._drop_user(next(iter(self.users)))
        while len(self.rooms) > size:
            _, room = self.rooms.popitem(last=False)
            self.room_slugs.pop(room.facts.room_id, None)
        if len(self.touched) > 4 * size:
            # Only reads begun after a stamp care about it, and a read is kept
            # only if it ends within the entry lifetime: older stamps can go.
            horizon = clock() - max(self.seconds, 1) * 2
            self.touched = {c: t for c, t in self.touched.items() if t > horizon}


def clock() -> float:
    """The loop's clock: the one the hub stamps its subscriptions with."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


connect_cache = ConnectCache()
hub.cache_listeners.append(connect_cache)


def history_loader(room_id: int):
    """hello's history from the database (Hub.recent_page's `load`)."""

    async def load(limit: int):
        return await database_sync_to_async(selectors.message_history)(
            room_id=room_id, before=None, limit=limit
        )

    return load
