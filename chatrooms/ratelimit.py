"""Per-user limits: sliding windows of messages and creations, and a socket's frame budget.

- Messages: CHAT_RATE_LIMIT per user per room and CHAT_USER_RATE_LIMIT per
  user across all rooms, both checked for each message in one call
  (`message_allowed`).
- Creations: CHAT_ROOM_CREATE_RATE and CHAT_INVITE_CREATE_RATE per user
  (`action_allowed`, for the synchronous services).

A window slides (not fixed buckets, which let 2N through across a bucket
edge). Several windows are checked all or nothing: an event is counted in
every window or, when one of them is full, in none. With Redis the windows
are shared by every process, in one atomic script call (one round trip per
message, whatever the number of windows); without it, or while Redis is
unreachable, this process counts on its own.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections import deque
from typing import Literal

from django.conf import settings
from redis.exceptions import NoScriptError, RedisError

from chatrooms.redis import get_redis, key, redis_url, sync_redis

logger = logging.getLogger(__name__)

# One limit on one bucket: (bucket, count, seconds). The bucket names it in this
# process; in Redis its key is key("rl", *bucket).
Window = tuple[tuple, int, float]
Action = Literal["room_create", "invite_create"]

# KEYS: one sorted set per window. ARGV: now, the event's member, then seconds
# and count for each key in turn. 0 when every window had room (the event is
# now in each), else the number of the first full window (nothing counted).
_SLIDING_WINDOWS = """
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - tonumber(ARGV[1 + 2 * i]))
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[2 + 2 * i]) then
    return i
  end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[i], math.ceil(tonumber(ARGV[1 + 2 * i]) * 1000))
end
return 0
"""
# Sent by its SHA1: the message path is benchmarked, and EVALSHA spares Redis
# parsing the script each time. An EVAL after NoScriptError caches it again.
_SLIDING_WINDOWS_SHA = hashlib.sha1(_SLIDING_WINDOWS.encode(), usedforsecurity=False).hexdigest()


class _Times(deque):
    """One bucket's event times in this process, with its window's length."""

    __slots__ = ("seconds",)


_local: dict[tuple, _Times] = {}
_local_sweep_at = 0.0
# The services count from request threads, the sockets from the event loop.
_local_lock = threading.Lock()


async def message_allowed(*, user_id: int, room_id: int) -> bool:
    """Count one message by the user in the room; False when over either message limit."""
    windows = _message_windows(user_id, room_id)
    if not windows:
        return True
    now = time.time()
    if redis_url():
        keys, args = _script_input(windows, now)
        client = get_redis()
        try:
            try:
                full = await client.evalsha(_SLIDING_WINDOWS_SHA, len(keys), *keys, *args)
            except NoScriptError:
                full = await client.eval(_SLIDING_WINDOWS, len(keys), *keys, *args)
            return full == 0
        except (RedisError, OSError):
            # Redis is down: limit by this process's count rather than
            # refuse every message (storage still takes them).
            logger.warning("rate limit falls back to this process: Redis unreachable")
    return _local_allowed(windows, now)


def action_allowed(*, action: Action, user_id: int) -> bool:
    """Count one creation (a room, an invite) by the user; False when over its limit."""
    rate = action_rate(action)
    if rate is None:
        return True
    windows: list[Window] = [((action, user_id), *rate)]
    now = time.time()
    if redis_url():
        keys, args = _script_input(windows, now)
        client = sync_redis()
        try:
            try:
                full = client.evalsha(_SLIDING_WINDOWS_SHA, len(keys), *keys, *args)
            except NoScriptError:
                full = client.eval(_SLIDING_WINDOWS, len(keys), *keys, *args)
            return full == 0
        except (RedisError, OSError):
            logger.warning("rate limit falls back to this process: Redis unreachable")
    return _local_allowed(windows, now)


def action_rate(action: Action) -> tuple[int, float] | None:
    """The (count, seconds) limit of an action, None when off."""
    if action == "room_create":
        return settings.CHAT_ROOM_CREATE_RATE
    return settings.CHAT_INVITE_CREATE_RATE


def describe_rate(rate: tuple[int, float]) -> str:
    """(10, 3600.0) -> "10 per hour", for people."""
    count, seconds = rate
    per = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}.get(seconds)
    return f"{count} per {per}" if per else f"{count} per {seconds:g} seconds"


def _message_windows(user_id: int, room_id: int) -> list[Window]:
    windows: list[Window] = []
    per_room = settings.CHAT_RATE_LIMIT
    if per_room is not None:
        windows.append(((room_id, user_id), *per_room))
    per_user = settings.CHAT_USER_RATE_LIMIT
    if per_user is not None:
        windows.append((("user", user_id), *per_user))
    return windows


def _script_input(windows: list[Window], now: float) -> tuple[list[str], list]:
    keys = [key("rl", *bucket) for bucket, _, _ in windows]
    args: list = [now, f"{now}:{uuid.uuid4().hex[:8]}"]
    for _, count, seconds in windows:
        args += [seconds, count]
    return keys, args


def _local_allowed(windows: list[Window], now: float) -> bool:
    global _local_sweep_at
    with _local_lock:
        if now - _local_sweep_at > 60:  # forget idle buckets, so memory stays bounded
            _local_sweep_at = now
            stale = [b for b, t in _local.items() if not t or t[-1] <= now - t.seconds]
            for bucket in stale:
                del _local[bucket]
        for bucket, count, seconds in windows:
            times = _local.get(bucket)
            if times is None:
                continue
            while times and times[0] <= now - seconds:
                times.popleft()
            if len(times) >= count:
                return False
        for bucket, _, seconds in windows:
            times = _local.get(bucket)
            if times is None:
                times = _local[bucket] = _Times()
            times.seconds = seconds
            times.append(now)
        return True


class FrameBudget:
    """Per-socket token bucket for the frames that are not messages.

    history, read, typing, edit, delete and ping cost the server a query or
    a broadcast: a burst of 30, refilled at 10 a second, is far above what
    the browser client sends and bounds what a scripted one can.
    """

    __slots__ = ("tokens", "stamp")
    CAPACITY = 30.0
    RATE = 10.0

    def __init__(self) -> None:
        self.tokens = self.CAPACITY
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.CAPACITY, self.tokens + (now - self.stamp) * self.RATE)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
