"""The websocket side of the ASGI application: everything in front of the chat
consumer, in one coroutine per socket (the http side is chatrooms/urls.py).

For each handshake, in order:

1. the path must be `/ws/chat/<slug>/` (a slug as Django's <slug:> converter
   reads it); anything else (`/ws/nope/`, `/ws/chat/café/`) is refused at the
   handshake (HTTP 403) with one log line, where Channels' URLRouter raised
   out of the application (HTTP 500 and a traceback);
2. the Origin must be the site's own, by Django's CSRF rule (`origin_allowed`):
   scheme, host and port equal to those the socket was opened on, that host
   one of ALLOWED_HOSTS, or an origin of CSRF_TRUSTED_ORIGINS; else 403.
   (Channels' AllowedHostsOriginValidator compared the host alone:
   `Origin: http://localhost:9999` passed for a site on port 8000.)
3. the session cookie's key goes in the scope (`session_key`); nothing is
   read: the consumer resolves the session and the user from the process's
   connect cache (chatrooms/access.py) or in one database hop with the room;
4. the consumer runs. A database error that escapes it before the handshake
   was answered closes the socket with 1013 (try again later) instead of the
   server's 500 and traceback; the consumer itself already does that for its
   own storage failures.

One callable rather than a stack of middleware (origin validator, guard,
session, router): each layer kept a coroutine frame, and each a copy of the
scope, alive for the socket's whole life: about 2 KiB per idle socket
(docs/performance.md). What goes in the scope is added to the server's own
scope dict, which belongs to this one connection.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from django.conf import settings
from django.db import Error as DatabaseError
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

from chatrooms import metrics, protocol
from chatrooms.consumers import ChatConsumer

logger = logging.getLogger(__name__)

# Django's <slug:...> converter: ASCII letters, digits, hyphens and underscores.
SOCKET_PATH = re.compile(r"/ws/chat/(?P<slug>[-a-zA-Z0-9_]{1,100})/")


class ChatSocketApp:
    """ASGI application for websocket scopes (module docstring)."""

    def __init__(self, consumer_class: type[ChatConsumer] = ChatConsumer) -> None:
        self.consumer_class = consumer_class

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        match = SOCKET_PATH.fullmatch(path)
        if match is None:
            return await self.refuse(receive, send, "path", f"no chat socket at {path[:200]!r}")
        origin = host = None
        key = ""
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"host":
                host = value.decode("latin-1")
            elif name == b"cookie" and not key:
                cookies = parse_cookie(value.decode("latin-1"))
                key = cookies.get(settings.SESSION_COOKIE_NAME, "")
        secure = scope.get("scheme") in ("wss", "https")
        if not origin_allowed(origin, host, secure):
            detail = f"origin {(origin or '')[:200]!r} not allowed for {(host or '')[:200]!r}"
            return await self.refuse(receive, send, "origin", detail)
        scope["url_route"] = {"args": (), "kwargs": {"slug": match["slug"]}}
        scope["session_key"] = key
        scope["server_send"] = send  # the consumer's Outbox writes frames through it
        consumer = self.consumer_class()
        try:
            await consumer(scope, receive, send)
        except DatabaseError as exc:
            if consumer.answered:
                _unhandled(consumer, match["slug"])
                raise
            metrics.socket_refused(
                "unavailable",
                room=match["slug"],
                code=protocol.CLOSE_TRY_AGAIN,
                detail=f"storage unavailable: {exc}",
                level=logging.WARNING,
            )
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": protocol.CLOSE_TRY_AGAIN})
        except Exception:
            _unhandled(consumer, match["slug"])
            raise

    @staticmethod
    async def refuse(receive, send, reason: str, detail: str) -> None:
        metrics.socket_refused(reason, detail=detail)
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close"})  # before the accept: HTTP 403


def _unhandled(consumer: ChatConsumer, slug: str) -> None:
    """Name the socket of an exception that escapes the consumer (the server logs its traceback)."""
    socket_id = getattr(consumer, "conn_id", "")
    metrics.socket_log.error(
        "socket %s in room %s ended by an unhandled exception",
        socket_id or "-",
        slug,
        extra=metrics.socket_fields("error", socket_id=socket_id, room=slug),
    )


def origin_allowed(origin: str | None, host: str | None, secure: bool) -> bool:
    """Whether a socket opened on `host` (the Host header) from `origin` may go on.

    Django's CSRF origin rule (CsrfViewMiddleware._origin_verified), so the
    socket trusts exactly the origins a form POST does: the request's own
    origin (`https://` when the socket came over TLS, as uvicorn's proxy
    headers report it behind nginx, else `http://`, then the Host header,
    port included) when that host is one of ALLOWED_HOSTS; or one of
    CSRF_TRUSTED_ORIGINS (`https://*.example.com` for subdomains). No Origin
    (not a browser) is refused too.
    """
    if not origin:
        return False
    origin = origin.lower()
    if host:
        host = host.lower()
        domain, _ = split_domain_port(host)
        allowed = settings.ALLOWED_HOSTS
        if settings.DEBUG and not allowed:
            allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django's get_host
        if domain and validate_host(domain, allowed):
            if origin == ("https://" if secure else "http://") + host:
                return True
    trusted = settings.CSRF_TRUSTED_ORIGINS
    if not trusted:
        return False
    if origin in (o.lower() for o in trusted):
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return any(
        parts.scheme == pattern.scheme and is_same_domain(parts.netloc, pattern.netloc.lstrip("*"))
        for pattern in map(urlsplit, (o.lower() for o in trusted if "*" in o))
    )
