"""CHAT_RATE_LIMIT: at most N messages per user per room in any window of S seconds.

A sliding window (not fixed buckets, which let 2N through across a bucket
edge). With Redis the window is shared by every process, in one atomic
script call; without it, this process keeps it in memory.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque

from django.conf import settings
from redis.exceptions import RedisError

from chatrooms.redis import get_redis, key, redis_url

logger = logging.getLogger(__name__)

_SLIDING_WINDOW = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return 1
"""

_local: dict[tuple[int, int], deque[float]] = {}
_local_sweep_at = 0.0


async def message_allowed(*, user_id: int, room_id: int) -> bool:
    """Count one message by the user in the room; False when over the limit."""
    limit = settings.CHAT_RATE_LIMIT
    if limit is None:
        return True
    count, window = limit
    now = time.time()
    if redis_url():
        try:
            allowed = await get_redis().eval(
                _SLIDING_WINDOW,
                1,
                key("rl", room_id, user_id),
                now,
                window,
                count,
                f"{now}:{uuid.uuid4().hex[:8]}",
            )
            return bool(allowed)
        except (RedisError, OSError):
            # Redis is down: limit by this process's count rather than
            # refuse every message (storage still takes them).
            logger.warning("rate limit falls back to this process: Redis unreachable")
    return _local_allowed((user_id, room_id), now, count, window)


def _local_allowed(bucket: tuple[int, int], now: float, count: int, window: float) -> bool:
    global _local_sweep_at
    if now - _local_sweep_at > 60:  # forget idle senders, so memory stays bounded
        _local_sweep_at = now
        for stale in [b for b, times in _local.items() if not times or times[-1] < now - window]:
            del _local[stale]
    times = _local.setdefault(bucket, deque())
    while times and times[0] <= now - window:
        times.popleft()
    if len(times) >= count:
        return False
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
