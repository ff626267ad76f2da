"""The asyncio Redis client that presence and rate limits share.

redis.asyncio clients belong to the event loop that made them, so there is
one per (loop, URL); a process normally has one loop, tests have many.
"""

from __future__ import annotations

import asyncio
import weakref

import redis as sync_redis_module
from django.conf import settings
from redis import asyncio as aioredis

POOL_SIZE = 32  # connections per (loop, URL); commands are short (no blocking reads here)
POOL_WAIT = 5  # seconds a command waits for a free connection before failing as Redis down

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aioredis.Redis]] = (
    weakref.WeakKeyDictionary()
)


def redis_url() -> str:
    """REDIS_URL, or "" when this site runs without Redis."""
    return settings.REDIS_URL


def get_redis() -> aioredis.Redis:
    """The client for REDIS_URL on the running loop."""
    url = redis_url()
    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    client = per_loop.get(url)
    if client is None:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            # A bounded pool that waits for a free connection: a burst of
            # connects (a restart brings every browser back at once) then
            # shares POOL_SIZE connections, where redis-py's default pool
            # opened one more connection per waiting command (each costing a
            # TCP connect, a HELLO and, in redis-py 8, a package-metadata
            # lookup): 9 % of a connect storm's CPU went there.
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT,
            # Past redis-py 8's 5 s socket timeout (a blocking read would die).
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=15,
        )
        client = aioredis.Redis.from_pool(pool)
        per_loop[url] = client
    return client


_sync_clients: dict[str, sync_redis_module.Redis] = {}


def sync_redis() -> sync_redis_module.Redis:
    """A thread-safe synchronous client for REDIS_URL (views, services, admin)."""
    url = redis_url()
    client = _sync_clients.get(url)
    if client is None:
        client = _sync_clients[url] = sync_redis_module.Redis.from_url(
            url, socket_timeout=10, socket_connect_timeout=5
        )
    return client


def key(*parts: object) -> str:
    """A key under this site's prefix: key("presence", 3) -> "chat:presence:3"."""
    return ":".join([settings.REDIS_PREFIX, *map(str, parts)])
