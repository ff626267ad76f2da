"""The Content-Security-Policy middleware: django-csp's, naming this host's WebSocket origin.

The policy itself is in project/settings.py ("Content-Security-Policy").
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware as BaseCSPMiddleware
from csp.middleware import PolicyParts
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase


def socket_sources(request: HttpRequest) -> list[str]:
    """The ws:/wss: origins of the host this request came to, as connect-src sources."""
    try:
        host = request.get_host()
    except DisallowedHost:
        # The response is the 400 for that host; it opens no socket.
        return []
    if request.is_secure():
        return [f"wss://{host}"]
    # A TLS proxy that does not say so (no X-Forwarded-Proto) serves an https
    # page from a request that looks plain: its client opens wss.
    return [f"ws://{host}", f"wss://{host}"]


class CSPMiddleware(BaseCSPMiddleware):
    """django-csp's middleware, with this host's ws:/wss: origin added to connect-src.

    CSP3 lets 'self' match a WebSocket to the page's own host, but older
    browsers (Safari before 15.4) read it as http(s) only; naming the origin
    keeps the chat working there too.
    """

    def get_policy_parts(
        self,
        request: HttpRequest,
        response: HttpResponseBase,
        report_only: bool = False,
    ) -> PolicyParts:
        """The policy of this response, connect-src extended by this host's socket origin."""
        parts = super().get_policy_parts(request, response, report_only)
        sources = socket_sources(request)
        if sources:
            update = dict(parts.update or {})
            update["connect-src"] = [*update.get("connect-src", ()), *sources]
            parts.update = update
        return parts
