"""Open sockets follow the browser session that opened them.

A socket is authenticated once, at the handshake, by its session cookie.
Django ends a session in ways no socket hears of: it expires, it is deleted
(sign-out in another tab of the same browser, `clearsessions`, staff), or its
user's password changes, which makes Django refuse the session from then on
(`django.contrib.auth.get_user` checks the session's auth hash). Two things
here close the sockets of such sessions:

- the session check: one asyncio task per process that, every
  CHAT_SESSION_CHECK_SECONDS, reads the sessions and users of all the
  process's watched sockets (`watch` at the handshake, `unwatch` at the
  close) in one thread and a few queries, and closes those whose session is
  gone or expired (`session_expired`), whose user is inactive
  (`deactivated`) or whose auth hash no longer matches (`password_changed`).
  A session that ends is so noticed within one period plus one round.
- for password changes, at once: a receiver (chatrooms/receivers.py) closes
  every socket of the user as the new password is saved, on any path, except
  those of the session making the change, which `PasswordChangeMiddleware`
  then settles at the end of the request (see there).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Collection, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from importlib import import_module

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.cache import SessionStore as CacheStore
from django.contrib.sessions.backends.db import SessionStore as DbStore
from django.core.cache import caches
from django.db import connection
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from chatrooms import services

logger = logging.getLogger(__name__)

# How long the sockets of a session that is changing its password are left
# out of the check while that request finishes (its session gets a new key
# and hash mid-request). The end of the request settles them at once; this
# only bounds how long a lost settlement keeps them unchecked.
HOLD_SECONDS = 30.0
CHUNK = 500  # keys per query: under SQLite's limit of bound parameters


# --- The registry of this process's sockets ------------------------------------------


@dataclass(slots=True)
class _Watch:
    user_id: int
    session_key: str
    handler: Callable[[dict], None]  # the socket's handler of control events
    held_until: float = 0.0


_watches: dict[str, _Watch] = {}
_task: asyncio.Task | None = None


def watch(*, conn_id: str, user_id: int, session_key: str, handler: Callable[[dict], None]) -> None:
    """Check this socket's session every round; `handler` gets {"reason": ...} to close it."""
    global _task
    if not session_key:  # not opened through a session: nothing to follow
        return
    _watches[conn_id] = _Watch(user_id, session_key, handler)
    loop = asyncio.get_running_loop()
    if _task is None or _task.done() or _task.get_loop() is not loop:
        _task = loop.create_task(_run(), name="chat-session-check")


def unwatch(conn_id: str) -> None:
    """The socket closed: stop checking it (safe to call twice)."""
    _watches.pop(conn_id, None)


def rekey(conn_id: str, session_key: str) -> None:
    """The socket's session lives on under a new key (a password change cycles it)."""
    entry = _watches.get(conn_id)
    if entry is not None:
        entry.session_key = session_key
        entry.held_until = 0.0


def hold(conn_id: str) -> None:
    """Leave the socket out of the check until `rekey` (or HOLD_SECONDS)."""
    entry = _watches.get(conn_id)
    if entry is not None:
        entry.held_until = time.monotonic() + HOLD_SECONDS


# --- The session check -------------------------------------------------------------------


async def _run() -> None:
    """The process's session check: one round per period while any socket is watched."""
    while _watches:
        await asyncio.sleep(getattr(settings, "CHAT_SESSION_CHECK_SECONDS", 60))
        try:
            await check()
        except Exception:  # the database is down, say: the next round tries again
            logger.exception("session check failed; trying again next round")


async def check() -> None:
    """One round: close the watched sockets whose session no longer signs their user in."""
    now = time.monotonic()
    batch = {
        conn_id: (entry.user_id, entry.session_key)
        for conn_id, entry in _watches.items()
        if entry.held_until <= now
    }
    if not batch:
        return
    verdicts = await database_sync_to_async(judge)(batch)
    if verdicts:  # what the connect cache holds of those users is wrong too
        from chatrooms.access import connect_cache

        for conn_id in verdicts:
            connect_cache.forget_user(batch[conn_id][0])
    for conn_id, reason in verdicts.items():
        entry = _watches.get(conn_id)
        # Gone, re-keyed or held while the database was read: judged on stale facts.
        stale = entry is None or entry.session_key != batch[conn_id][1]
        if stale or entry.held_until > time.monotonic():
            continue
        try:
            entry.handler({"reason": reason})
        except Exception:  # kept: the next round tries again
            logger.exception("closing a socket whose session ended failed")
        else:
            del _watches[conn_id]


def judge(batch: dict[str, tuple[int, str]]) -> dict[str, str]:
    """For each socket (conn id -> user id, session key) that must close: the reason."""
    sessions = read_sessions({key for _, key in batch.values()})
    users = {
        user.pk: user
        for ids in _chunks(sorted({user_id for user_id, _ in batch.values()}))
        for user in get_user_model().objects.filter(pk__in=ids).only("password", "is_active")
    }
    verdicts = {}
    for conn_id, (user_id, key) in batch.items():
        reason = verdict(sessions.get(key), users.get(user_id), user_id)
        if reason:
            verdicts[conn_id] = reason
    return verdicts


def verdict(data: dict | None, user, user_id: int) -> str:
    """Django's own test (`django.contrib.auth.get_user`), as a close reason; "" when fine."""
    if not data or user is None or str(data.get(SESSION_KEY)) != str(user_id):
        return "session_expired"
    if not getattr(user, "is_active", True):
        return "deactivated"
    session_hash = data.get(HASH_SESSION_KEY) or ""
    # Hashes made with a SECRET_KEY_FALLBACKS key still sign in (Django re-signs them).
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    if not any(constant_time_compare(session_hash, good) for good in hashes):
        return "password_changed"
    return ""


def read_sessions(keys: Collection[str]) -> dict[str, dict]:
    """The data of the live sessions among `keys` (missing or expired ones are left out).

    Read the way the configured SESSION_ENGINE stores them: db and cached_db
    from the database table, which both write every session through to (one
    query per CHUNK keys); cache with one get_many. Any other engine (file,
    signed cookies, a third party's) loads each session through its store.
    """
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if issubclass(store, DbStore):
        model, decoder, found = store.get_model_class(), store(), {}
        for chunk in _chunks(sorted(keys)):
            rows = model.objects.filter(
                session_key__in=chunk, expire_date__gt=timezone.now()
            ).values_list("session_key", "session_data")
            found.update((key, decoder.decode(data)) for key, data in rows)
        return found
    if issubclass(store, CacheStore):
        prefix = store.cache_key_prefix
        hits = caches[settings.SESSION_CACHE_ALIAS].get_many([prefix + key for key in keys])
        return {name[len(prefix) :]: data for name, data in hits.items() if data}
    found = {}
    for key in keys:
        data = store(session_key=key).load()
        if data:
            found[key] = data
    return found


def read_sessions_expiring(keys: Collection[str]) -> dict[str, tuple[dict, float]]:
    """read_sessions, with when each session expires (epoch seconds; inf when the
    engine does not say: a cache or a file keeps it).

    For handshakes (chatrooms/access.py): the database engines read the rows
    with their expiry in one plain query (the ORM's query building cost five
    times the query in a connect storm); others load through their store.
    """
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if not issubclass(store, DbStore):
        return {key: (data, math.inf) for key, data in read_sessions(keys).items()}
    decoder, found, now = store(), {}, timezone.now()
    for chunk in _chunks(sorted(set(keys))):
        placeholders = ", ".join(["%s"] * len(chunk))
        with connection.cursor() as cursor:
            cursor.execute(
                f"{_session_sql(store.get_model_class())} ({placeholders})", [now, *chunk]
            )
            rows = cursor.fetchall()
        for key, data, expires in rows:
            data = decoder.decode(data)
            if data:
                found[key] = (data, expires.timestamp())
    return found


@cache
def _session_sql(model) -> str:
    """The live sessions' key, data and expiry, but the list of keys."""
    q = connection.ops.quote_name
    opts = model._meta
    fields = ("session_key", "session_data", "expire_date")
    key, data, expires = (q(opts.get_field(f).column) for f in fields)
    table = q(opts.db_table)
    return f"SELECT {key}, {data}, {expires} FROM {table} WHERE {expires} > %s AND {key} IN"  # noqa: S608


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- Password changes made over HTTP -----------------------------------------------------

# The current request and the password changes made in it, by user id:
# (the session key its sockets know, the user's new auth hash).
_request: ContextVar[tuple[object, dict[int, tuple[str, str]]] | None] = ContextVar(
    "chat_password_change_request", default=None
)


def changing_session(*, user) -> str:
    """The key of the session changing `user`'s password now, whose sockets stay open; "".

    That is the current request's session when it is signed in as `user`:
    allauth's change page, the admin's password form for one's own account.
    A reset (signed out), staff changing someone else's password, a command
    or the shell keep none. The request's end settles the kept sockets.
    """
    current = _request.get()
    session = getattr(current[0], "session", None) if current else None
    if session is None or not session.session_key or session.get(SESSION_KEY) != str(user.pk):
        return ""
    changes = current[1]
    key = changes[user.pk][0] if user.pk in changes else session.session_key
    changes[user.pk] = (key, user.get_session_auth_hash())
    return key


class PasswordChangeMiddleware:
    """Settle the sockets of a session that changed its own user's password.

    Why at the end of the request: the new password is saved (and every
    other socket closed) before the view calls update_session_auth_hash,
    which gives the session a new key and the new hash; only then is it
    known whether the session stays signed in. allauth's password_changed
    signal would say so for its own page only, and only after its
    notification mail; Django's admin sends no signal at all. So, after the
    response: if the session still signs the user in, its sockets learn the
    new key; if not (a view that did not keep it), they close too.

    Listed before SessionMiddleware, so that this runs after the session is
    saved: a socket told its new key finds it stored, with the new hash.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        changes: dict[int, tuple[str, str]] = {}
        token = _request.set((request, changes))
        try:
            response = self.get_response(request)
        finally:
            _request.reset(token)
        for user_id, (key, auth_hash) in changes.items():
            _settle(request, user_id=user_id, session_key=key, auth_hash=auth_hash)
        return response


def _settle(request, *, user_id: int, session_key: str, auth_hash: str) -> None:
    """Re-key the changing session's sockets if it is still signed in, else close them."""
    session = request.session
    kept = (
        bool(session.session_key)
        and session.get(SESSION_KEY) == str(user_id)
        and constant_time_compare(session.get(HASH_SESSION_KEY) or "", auth_hash)
    )
    if kept:
        services.user_sockets_rekey(
            user_id=user_id, session_key=session_key, new_session_key=session.session_key
        )
    else:
        services.user_sockets_close(
            user_id=user_id, reason="password_changed", session_key=session_key
        )
