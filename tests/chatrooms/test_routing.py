"""chatrooms/routing.py: which handshakes reach the chat consumer.

The Origin rule is Django's CSRF one: the site's own scheme, host and port,
that host in ALLOWED_HOSTS, or an origin of CSRF_TRUSTED_ORIGINS.
"""

from __future__ import annotations

import pytest

from chatrooms.routing import origin_allowed
from tests.chatrooms.conftest import open_socket


@pytest.mark.parametrize(
    "origin, host, secure, allowed",
    [
        ("http://localhost:8000", "localhost:8000", False, True),
        ("http://LOCALHOST:8000", "localhost:8000", False, True),
        ("http://localhost:9999", "localhost:8000", False, False),  # another port
        ("http://localhost", "localhost:8000", False, False),
        ("https://localhost:8000", "localhost:8000", False, False),  # another scheme
        ("http://localhost:8000", "localhost:8000", True, False),  # TLS socket, http page
        ("https://chat.example.com", "chat.example.com", True, True),
        ("http://chat.example.com", "chat.example.com", True, False),
        ("https://evil.example", "chat.example.com", True, False),
        ("https://evil.example", "evil.example", True, False),  # a host not allowed
        ("null", "chat.example.com", True, False),
        ("", "chat.example.com", True, False),
        (None, "chat.example.com", True, False),
        ("https://chat.example.com", None, True, False),  # no Host header
        ("https://app.partner.example", "chat.example.com", True, True),  # trusted
        ("https://x.trusted.example", "chat.example.com", True, True),  # trusted wildcard
        ("http://x.trusted.example", "chat.example.com", True, False),
        ("https://trusted.example.evil", "chat.example.com", True, False),
    ],
)
def test_the_origin_must_be_the_sites_own_or_trusted(settings, origin, host, secure, allowed):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["localhost", "chat.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.partner.example", "https://*.trusted.example"]
    assert origin_allowed(origin, host, secure) is allowed


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "origin, accepted",
    [(b"http://localhost", True), (b"http://localhost:9999", False), (b"https://localhost", False)],
)
async def test_a_socket_from_another_port_or_scheme_is_refused(room, alice, origin, accepted):
    ok, sock = await open_socket(alice, room.slug, origin=origin)
    assert ok is accepted
    if ok:
        await sock.close()
