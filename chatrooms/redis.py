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
        client = aioredis.Redis.from_url(
            url,
            # Past redis-py 8's 5 s socket timeout (a blocking read would die)
            # and its 100-connection pool (a burst of connects exhausts it).
            socket_timeout=10,
            socket_connect_timeout=5,
            max_connections=2000,
            health_check_interval=15,
        )
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
