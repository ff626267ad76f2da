"""Who is online in which room: a user is online while one of their sockets is.

Two stores, one interface:

- RedisPresence (REDIS_URL set): shared by every process. Each socket is a
  member of a per-(room, user) sorted set scored by its expiry; a per-room
  sorted set holds each user's latest expiry. Every process refreshes its
  own sockets every CHAT_PRESENCE_TIMEOUT/3 seconds, and reaps users whose
  sockets all expired (a killed process never runs `disconnect`): the
  process whose atomic removal succeeds broadcasts the `leave`. So the users
  of a dead process leave within CHAT_PRESENCE_TIMEOUT plus one period.
- MemoryPresence (no Redis): one process, nothing expires.

`join` and `leave` answer whether this socket changed the user's state
(0 -> 1 sockets, 1 -> 0), so a second tab never announces anything.
`join_listing` is a handshake's one call: the join, the online list and
their display names; on Redis one script, one round trip. It also takes the
socket's slot under CHAT_MAX_SOCKETS_PER_USER (the user's sockets in every
room, on every process), in the same atomic step, or raises TooManySockets
and joins nothing. On Redis the slots are one more sorted set per user,
scored by expiry and refreshed by the same keep-alive, so a dead process's
sockets stop counting within CHAT_PRESENCE_TIMEOUT; `leave` frees the slot.

The Lua scripts are sent by their SHA1 (EVALSHA) and loaded into Redis
once, again only when Redis answers that it lost them (a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass

import orjson
from django.conf import settings
from redis.exceptions import NoScriptError

from accounts.models import shown_name
from chatrooms import protocol
from chatrooms.hub import hub
from chatrooms.redis import get_redis, key, redis_url, sync_redis

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Conn:
    """One socket in one room."""

    conn_id: str
    room_id: int
    username: str
    display_name: str = ""
    user_id: int = 0  # 0: counted under no user's socket cap


class TooManySockets(Exception):
    """The user has CHAT_MAX_SOCKETS_PER_USER sockets open already; nothing was joined."""


def _socket_cap(conn: Conn) -> int:
    return settings.CHAT_MAX_SOCKETS_PER_USER if conn.user_id else 0


# --- In-process --------------------------------------------------------------------


class MemoryPresence:
    """Presence for a single process (the embedded default)."""

    def __init__(self) -> None:
        self.rooms: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self.names: dict[str, str] = {}
        self.sockets: dict[int, set[str]] = {}  # user id -> their sockets, every room

    async def join(self, conn: Conn) -> bool:
        if conn.user_id:
            self.sockets.setdefault(conn.user_id, set()).add(conn.conn_id)
        self.names[conn.username] = shown_name(conn.display_name, conn.username)
        sockets = self.rooms[conn.room_id][conn.username]
        sockets.add(conn.conn_id)
        return len(sockets) == 1

    async def leave(self, conn: Conn) -> bool:
        mine = self.sockets.get(conn.user_id)
        if mine is not None:
            mine.discard(conn.conn_id)
            if not mine:
                del self.sockets[conn.user_id]
        users = self.rooms.get(conn.room_id, {})
        sockets = users.get(conn.username)
        if not sockets or conn.conn_id not in sockets:
            return False
        sockets.discard(conn.conn_id)
        if sockets:
            return False
        del users[conn.username]
        if not users:
            self.rooms.pop(conn.room_id, None)
        return True

    async def online(self, room_id: int) -> list[str]:
        return sorted(self.rooms.get(room_id, {}))

    async def join_listing(self, conn: Conn) -> tuple[bool, list[str], dict[str, str]]:
        cap = _socket_cap(conn)
        # No await between the count and the join: atomic within the process.
        if cap and len(self.sockets.get(conn.user_id, ())) >= cap:
            raise TooManySockets(conn.user_id)
        joined = await self.join(conn)
        online = await self.online(conn.room_id)
        return joined, online, await self.display_names(conn.room_id, online)

    async def display_names(self, room_id: int, usernames: list[str]) -> dict[str, str]:
        return {name: self.names.get(name, name) for name in usernames}

    def online_counts(self, room_ids: list[int]) -> dict[int, int]:
        return {room_id: len(self.rooms.get(room_id, {})) for room_id in room_ids}


# --- Redis ---------------------------------------------------------------------------

# KEYS: user set, room set, room names, the user's sockets in every room (the
# cap's). ARGV: conn, now, ttl, username, display name, the cap (0: none).
# Returns 1 when the user had no live socket before (a join, or a rejoin
# after expiry). Also the keep-alive's refresh: it renews the cap's slot
# without checking the cap (an open socket is never closed by it).
_JOIN = """
if tonumber(ARGV[6]) > 0 then
  redis.call('ZADD', KEYS[4], tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[4], math.ceil(tonumber(ARGV[3]) * 2000))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local before = redis.call('ZCARD', KEYS[1])
local expires = tonumber(ARGV[2]) + tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], expires, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 2000))
local listed = redis.call('ZSCORE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[2], 'GT', expires, ARGV[4])
redis.call('PEXPIRE', KEYS[2], math.ceil(tonumber(ARGV[3]) * 2000))
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
redis.call('PEXPIRE', KEYS[3], math.ceil(tonumber(ARGV[3]) * 2000))
if before == 0 or not listed or tonumber(listed) <= tonumber(ARGV[2]) then
  return 1
end
return 0
"""
# The same join, then the room's online users (unsorted) and their display names
# (false where none is stored): [joined, usernames, names] as one JSON text, which
# orjson reads far faster than redis-py parses hundreds of replies (an empty
# list comes as {}). HMGET in chunks: Lua's unpack has a limit of a few
# thousand values. First the cap: the user's live sockets counted and this
# one's slot taken in the same atomic step, or the integer 0 (over the cap,
# nothing joined).
_JOIN_LISTING = """
local cap = tonumber(ARGV[6])
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[2])
  if redis.call('ZCARD', KEYS[4]) >= cap then
    return 0
  end
  redis.call('ZADD', KEYS[4], tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[4], math.ceil(tonumber(ARGV[3]) * 2000))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local before = redis.call('ZCARD', KEYS[1])
local expires = tonumber(ARGV[2]) + tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], expires, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 2000))
local listed = redis.call('ZSCORE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[2], 'GT', expires, ARGV[4])
redis.call('PEXPIRE', KEYS[2], math.ceil(tonumber(ARGV[3]) * 2000))
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
redis.call('PEXPIRE', KEYS[3], math.ceil(tonumber(ARGV[3]) * 2000))
local joined = 0
if before == 0 or not listed or tonumber(listed) <= tonumber(ARGV[2]) then
  joined = 1
end
local online = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[2], '+inf')
local names = {}
for i = 1, #online, 500 do
  local chunk = redis.call('HMGET', KEYS[3], unpack(online, i, math.min(i + 499, #online)))
  for _, name in ipairs(chunk) do
    names[#names + 1] = name
  end
end
return cjson.encode({joined, online, names})
"""
# KEYS: user set, room set, room names, the user's sockets (its cap slot, freed).
# ARGV: conn, now, username. 1 when it was the user's last live socket and the
# user is now gone from the room.
_LEAVE = """
redis.call('ZREM', KEYS[4], ARGV[1])
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if removed == 1 and redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('HDEL', KEYS[3], ARGV[3])
  return redis.call('ZREM', KEYS[2], ARGV[3])
end
return 0
"""
# KEYS: room set, room names. ARGV: now. The users whose sockets all expired, removed.
_REAP = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('HDEL', KEYS[2], unpack(gone))
end
return gone
"""


class _Script:
    """A Lua script run by its SHA1, loaded into Redis the first time Redis lacks it."""

    __slots__ = ("source", "sha")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, client, keys: list[str], args: list) -> object:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)


_join_script = _Script(_JOIN)
_join_listing_script = _Script(_JOIN_LISTING)
_leave_script = _Script(_LEAVE)
_reap_script = _Script(_REAP)


def _room_key(room_id: int) -> str:
    return key("presence", room_id)


def _names_key(room_id: int) -> str:
    return key("presence", room_id, "names")


def _user_key(room_id: int, username: str) -> str:
    return key("presence", room_id, "u", username)


def _sockets_key(user_id: int) -> str:
    """The user's sockets in every room, for CHAT_MAX_SOCKETS_PER_USER."""
    return key("sockets", user_id)


class RedisPresence:
    """Presence shared by every process through Redis, with expiry."""

    @property
    def ttl(self) -> float:
        return float(settings.CHAT_PRESENCE_TIMEOUT)

    def _join_args(self, conn: Conn) -> tuple[list[str], list]:
        keys = [
            _user_key(conn.room_id, conn.username),
            _room_key(conn.room_id),
            _names_key(conn.room_id),
            _sockets_key(conn.user_id),
        ]
        args = [
            conn.conn_id,
            time.time(),
            self.ttl,
            conn.username,
            shown_name(conn.display_name, conn.username),
            _socket_cap(conn),
        ]
        return keys, args

    async def join(self, conn: Conn) -> bool:
        return bool(await _join_script(get_redis(), *self._join_args(conn)))

    async def join_listing(self, conn: Conn) -> tuple[bool, list[str], dict[str, str]]:
        reply = await _join_listing_script(get_redis(), *self._join_args(conn))
        if reply == 0:
            raise TooManySockets(conn.user_id)
        joined, online, names = orjson.loads(reply)
        listed = {user: name or user for user, name in zip(online, names, strict=True)}
        usernames = sorted(listed)
        return bool(joined), usernames, {user: listed[user] for user in usernames}

    async def leave(self, conn: Conn) -> bool:
        keys = [
            _user_key(conn.room_id, conn.username),
            _room_key(conn.room_id),
            _names_key(conn.room_id),
            _sockets_key(conn.user_id),
        ]
        return bool(
            await _leave_script(get_redis(), keys, [conn.conn_id, time.time(), conn.username])
        )

    async def online(self, room_id: int) -> list[str]:
        names = await get_redis().zrangebyscore(_room_key(room_id), time.time(), "+inf")
        return sorted(name.decode() for name in names)

    async def display_names(self, room_id: int, usernames: list[str]) -> dict[str, str]:
        if not usernames:
            return {}
        values = await get_redis().hmget(_names_key(room_id), usernames)
        return {
            name: value.decode() if value else name
            for name, value in zip(usernames, values, strict=True)
        }

    async def reap(self, room_id: int) -> list[str]:
        """Remove and return the users of the room whose sockets all expired."""
        gone = await _reap_script(
            get_redis(), [_room_key(room_id), _names_key(room_id)], [time.time()]
        )
        return sorted(name.decode() for name in gone)

    def online_counts(self, room_ids: list[int]) -> dict[int, int]:
        """Synchronous, for the lobby view."""
        now = time.time()
        pipe = sync_redis().pipeline(transaction=False)
        for room_id in room_ids:
            pipe.zcount(_room_key(room_id), now, "+inf")
        return dict(zip(room_ids, pipe.execute(), strict=True))


# --- This process's sockets, refreshed and reaped ------------------------------------


class Tracker:
    """The sockets of this process, kept alive in the store.

    With Redis, one task per process refreshes every local socket and reaps
    expired users of the rooms it serves, broadcasting their `leave`.
    """

    def __init__(self) -> None:
        self.memory = MemoryPresence()
        self.redis = RedisPresence()
        self.conns: dict[str, Conn] = {}
        self._task: asyncio.Task | None = None

    @property
    def store(self) -> MemoryPresence | RedisPresence:
        return self.redis if redis_url() else self.memory

    async def join(self, conn: Conn) -> bool:
        """Register a socket; True when its user just came online in the room."""
        self.conns[conn.conn_id] = conn
        if redis_url():
            self._ensure_task()
        return await self.store.join(conn)

    async def leave(self, conn: Conn) -> bool:
        """Forget a socket; True when its user just went offline in the room."""
        self.forget(conn)
        return await self.store.leave(conn)

    def forget(self, conn: Conn) -> None:
        """Stop refreshing the socket (at once: cleanup must not be cut halfway)."""
        self.conns.pop(conn.conn_id, None)

    async def join_listing(self, conn: Conn) -> tuple[bool, list[str], dict[str, str]]:
        """join(), then the online usernames (sorted) and their display names: one round trip.

        Raises TooManySockets, having joined nothing, over CHAT_MAX_SOCKETS_PER_USER.
        """
        self.conns[conn.conn_id] = conn
        if redis_url():
            self._ensure_task()
        try:
            return await self.store.join_listing(conn)
        except TooManySockets:
            self.forget(conn)
            raise

    async def online_with_names(self, room_id: int) -> tuple[list[str], dict[str, str]]:
        """The online usernames, sorted, and their display names."""
        online = await self.store.online(room_id)
        return online, await self.store.display_names(room_id, online)

    def online_counts(self, room_ids: list[int]) -> dict[int, int]:
        return self.store.online_counts(room_ids)

    def _ensure_task(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        while self.conns:
            await asyncio.sleep(self.redis.ttl / 3)
            with contextlib.suppress(Exception):
                await self.refresh()

    async def refresh(self) -> None:
        """One round: refresh every local socket, reap expired users, tell the rooms."""
        for conn in list(self.conns.values()):
            if conn.conn_id not in self.conns:  # gone meanwhile: its slot stays free
                continue
            try:
                if await self.redis.join(conn):
                    # Back after Redis lost it (restart, flush): say so.
                    await broadcast_presence(conn.room_id, conn.username, "join")
            except Exception as exc:
                # Redis is down: one line per round, not one per socket.
                logger.warning("presence refresh failed: %s: %s", type(exc).__name__, exc)
                return
        for room_id in {conn.room_id for conn in self.conns.values()}:
            for username in await self.redis.reap(room_id):
                await broadcast_presence(room_id, username, "leave")


@dataclass(slots=True)
class _Burst:
    """A room's presence publishing now, and the latest change waiting behind it."""

    loop: asyncio.AbstractEventLoop
    task: asyncio.Task | None = None
    waiting: tuple[str, str] | None = None  # (username, status) of the latest change


_bursts: dict[int, _Burst] = {}  # room id -> the presence publish in flight


async def broadcast_presence(
    room_id: int,
    username: str,
    status: str,
    skip: str = "",
    listing: tuple[list[str], dict[str, str]] | None = None,
) -> None:
    """Tell the room that `username` joined or left, with the new online list.

    `skip`: a socket that knows already (the joiner, whose hello said it).
    `listing`: the online list and names, when the caller has just read them.

    A burst is coalesced (docs/protocol.md, presence): while one of the
    room's presence frames is being published, the changes that come wait,
    and go out as one frame naming the latest, with the online list read
    then. Every frame carries the whole list, so nothing is lost; and a
    thousand sockets opening at once no longer cost a thousand frames to
    each socket of the room (half the CPU of a connect storm went there).
    """
    loop = asyncio.get_running_loop()
    burst = _bursts.get(room_id)
    if burst is not None and burst.loop is loop:
        burst.waiting = (username, status)
        return
    burst = _bursts[room_id] = _Burst(loop)
    burst.task = loop.create_task(_publish_burst(room_id, burst, username, status, skip, listing))
    burst.task.add_done_callback(_retrieved)  # its error is the caller's, if still there
    # Shielded: a socket that goes away meanwhile does not take the waiting changes with it.
    await asyncio.shield(burst.task)


def _retrieved(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()


async def _publish_burst(room_id, burst: _Burst, username, status, skip, listing) -> None:
    try:
        await _publish_presence(room_id, username, status, skip, listing)
        while burst.waiting is not None:
            (username, status), burst.waiting = burst.waiting, None
            await _publish_presence(room_id, username, status, "", None)
    finally:
        if _bursts.get(room_id) is burst:
            del _bursts[room_id]


async def _publish_presence(room_id, username, status, skip, listing) -> None:
    online, names = listing if listing is not None else await tracker.online_with_names(room_id)
    frame = protocol.presence_frame(user=username, status=status, online=online, names=names)
    await hub.publish(room_id, protocol.encode(frame), skip=skip)


tracker = Tracker()
