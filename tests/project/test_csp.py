"""The Content-Security-Policy: strict, on every page type, with a nonce per response.

Every page is checked the same way: the header carries exactly the policy of
project/settings.py (plus this host's ws:/wss: origin), and the page keeps
its side of it: every inline <script> and <style> carries the header's nonce,
and nothing CSP blocks without a nonce is left (style attributes, inline
event handlers, javascript: URLs).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.test import Client, RequestFactory
from django.urls import path, reverse

from chatrooms import services
from project.csp import socket_sources
from project.urls import urlpatterns as project_urlpatterns

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db

# The policy of project/settings.py, nonce and socket origins aside.
STRICT = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'", "ws://testserver", "wss://testserver"],
    "font-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
# <script> types a browser does not run: data blocks, which CSP leaves alone.
DATA_TYPES = {"application/json", "application/ld+json"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction"}
NONCE = re.compile(r"^'nonce-([A-Za-z0-9+/]+={0,2})'$")


def _boom(request):
    raise RuntimeError("a bug in a view")


def _forbidden(request):
    raise PermissionDenied


def _suspicious(request):
    raise SuspiciousOperation("a bad request")


# Django's own error handlers (handler400/403/500), reached through views
# that fail the ways a real view can.
urlpatterns = [
    *project_urlpatterns,
    path("test-csp/500/", _boom),
    path("test-csp/403/", _forbidden),
    path("test-csp/400/", _suspicious),
]


# --------------------------------------------------------------------- reading a page


def parse_policy(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        assert name not in directives, f"{name} twice in {header!r}"
        directives[name] = values
    return directives


class _Tags(HTMLParser):
    """Every start tag of a page, with its attributes, and the text of each <script>/<style>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.inline: list[tuple[str, dict[str, str], str]] = []
        self._open: tuple[str, dict[str, str]] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        self.tags.append((tag, attributes))
        if tag in {"script", "style"}:
            self._open = (tag, attributes)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def handle_data(self, data):
        if self._open is not None:
            tag, attributes = self._open
            self.inline.append((tag, attributes, data))

    def handle_endtag(self, tag):
        if self._open is not None and tag == self._open[0]:
            self._open = None


def page_violations(html: str, nonce: str | None) -> list[str]:
    """What on the page a browser would block under the policy with this nonce."""
    parser = _Tags()
    parser.feed(html)
    found = []
    for tag, attributes in parser.tags:
        for name, value in attributes.items():
            if name == "style":
                found.append(f"<{tag} style={value!r}>: a style attribute takes no nonce")
            elif name.startswith("on"):
                found.append(f"<{tag} {name}=...>: an inline event handler")
            elif name in URL_ATTRIBUTES and value.strip().lower().startswith("javascript:"):
                found.append(f"<{tag} {name}={value!r}>: a javascript: URL")
    for tag, attributes, text in parser.inline:
        if tag == "script" and (
            "src" in attributes or attributes.get("type", "").lower() in DATA_TYPES
        ):
            continue
        if not text.strip():
            continue
        if nonce is None or attributes.get("nonce") != nonce:
            found.append(f"inline <{tag}> without the response's nonce: {text.strip()[:60]!r}")
    return found


def assert_strict(response, *, header: str = "Content-Security-Policy") -> str | None:
    """The response carries the strict policy and the page keeps to it; the nonce, if any."""
    other = {
        "Content-Security-Policy": "Content-Security-Policy-Report-Only",
        "Content-Security-Policy-Report-Only": "Content-Security-Policy",
    }[header]
    assert header in response, f"no {header} on {response.status_code} {response.request}"
    assert other not in response
    policy = parse_policy(response[header])
    nonces = set()
    for directive in ("script-src", "style-src"):
        kept = []
        for source in policy.get(directive, []):
            match = NONCE.match(source)
            if match:
                nonces.add(match[1])
            else:
                kept.append(source)
        policy[directive] = kept
    assert policy == STRICT, response[header]
    assert len(nonces) <= 1, nonces
    nonce = nonces.pop() if nonces else None
    if "text/html" in response.get("Content-Type", ""):
        problems = page_violations(response.content.decode(), nonce)
        assert not problems, "\n".join(problems)
    return nonce


def inline_scripts(response) -> list[dict[str, str]]:
    parser = _Tags()
    parser.feed(response.content.decode())
    return [attrs for tag, attrs, text in parser.inline if tag == "script" and text.strip()]


def test_page_checker_finds_what_csp_blocks():
    page = (
        '<p style="color: red">a</p><button onclick="go()">b</button>'
        '<a href=" JavaScript:go()">c</a><script>go()</script>'
        '<style nonce="other">p {}</style><script nonce="n1" type="importmap">{}</script>'
        '<script src="/static/x.js"></script><script type="application/json">{}</script>'
    )
    found = page_violations(page, "n1")
    assert [line.split(":")[0] for line in found] == [
        "<p style='color",
        "<button onclick=...>",
        "<a href=' JavaScript",
        "inline <script> without the response's nonce",
        "inline <style> without the response's nonce",
    ], found
    assert page_violations(page.replace("n1", "n2"), "n1")[-1].startswith("inline <script>")


# --------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _production_errors(settings):
    # Error pages as production serves them: django-csp leaves debug pages
    # (DEBUG=1, 404 and 500) without a header on purpose.
    settings.DEBUG = False


@pytest.fixture
def cast(user_factory, room_factory):
    owner = user_factory(username="olivia", display_name="Olivia")
    guest = user_factory(username="gus")
    staff = user_factory(username="boss", is_staff=True, is_superuser=True)
    room = room_factory("Team", owner=owner, slug="team", topic="plans")
    invite = services.invite_create(user=owner, room=room)
    return {"owner": owner, "guest": guest, "staff": staff, "room": room, "invite": invite}


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --------------------------------------------------------------------- every page type


def test_lobby(cast):
    response = signed_in(cast["owner"]).get("/chats/")
    assert response.status_code == 200
    assert_strict(response)


def test_room_page_import_map_carries_the_nonce(cast):
    response = signed_in(cast["owner"]).get("/chats/team/")
    assert response.status_code == 200
    nonce = assert_strict(response)
    assert nonce, "the room page's import map needs a nonce in the header"
    scripts = inline_scripts(response)
    assert {s.get("type") for s in scripts} == {"importmap", "application/json"}, scripts
    assert [s["nonce"] for s in scripts if s.get("type") == "importmap"] == [nonce]


def test_room_settings_copies_links_from_a_static_file(cast):
    response = signed_in(cast["owner"]).get("/chats/team/settings/")
    assert response.status_code == 200
    assert 'data-copy="invite-' in response.content.decode()
    assert_strict(response)
    assert inline_scripts(response) == []
    assert re.search(
        r'<script src="/static/chat/pages/copy-link\.js" defer></script>', response.content.decode()
    )


def test_profile(cast):
    response = signed_in(cast["owner"]).get("/accounts/profile/")
    assert response.status_code == 200
    assert_strict(response)


@pytest.mark.parametrize(
    "url", ["/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"]
)
def test_account_pages_signed_out(url):
    response = Client().get(url)
    assert response.status_code == 200
    assert_strict(response)


def test_email_addresses_page(cast):
    # allauth's own page, with its static scripts and a JSON data block.
    response = signed_in(cast["owner"]).get("/accounts/email/")
    assert response.status_code == 200
    assert_strict(response)


def test_invite_page(cast):
    url = reverse("chatrooms:invite_redeem", args=[cast["invite"].token])
    response = signed_in(cast["guest"]).get(url)
    assert response.status_code == 200
    assert_strict(response)


def test_invalid_invite_page(cast):
    invite = cast["invite"]
    services.invite_revoke(user=cast["owner"], invite=invite)
    response = signed_in(cast["guest"]).get(reverse("chatrooms:invite_redeem", args=[invite.token]))
    assert response.status_code == 410
    assert_strict(response)


def test_redirect_carries_it_too():
    response = Client().get("/chats/")
    assert response.status_code == 302
    assert_strict(response)


# --------------------------------------------------------------------- error pages


def test_not_found_page(cast):
    response = signed_in(cast["owner"]).get("/chats/no-such-room/")
    assert response.status_code == 404
    assert_strict(response)


@pytest.mark.urls(__name__)
def test_server_error_page():
    response = Client(raise_request_exception=False).get("/test-csp/500/")
    assert response.status_code == 500
    assert_strict(response)


@pytest.mark.urls(__name__)
def test_permission_denied_page():
    response = Client().get("/test-csp/403/")
    assert response.status_code == 403
    assert_strict(response)


@pytest.mark.urls(__name__)
def test_bad_request_page():
    response = Client().get("/test-csp/400/")
    assert response.status_code == 400
    assert_strict(response)


def test_disallowed_host_page():
    # The 400 for a Host not in ALLOWED_HOSTS: no socket origin to name.
    response = Client(HTTP_HOST="evil.example").get("/accounts/login/")
    assert response.status_code == 400
    assert "Content-Security-Policy" in response
    policy = parse_policy(response["Content-Security-Policy"])
    assert policy["connect-src"] == ["'self'"]
    assert "evil.example" not in response["Content-Security-Policy"]


def test_csrf_failure_page_is_ours_without_inline_style(cast):
    # Django's own CSRF page has an inline <style>; templates/403_csrf.html replaces it.
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast["owner"])
    response = client.post("/accounts/profile/", {"display_name": "x"})
    assert response.status_code == 403
    assert "This form could not be sent" in response.content.decode()
    assert "<style" not in response.content.decode()
    assert_strict(response)


def test_member_forbidden_from_settings(cast):
    services.invite_redeem(user=cast["guest"], token=cast["invite"].token)
    response = signed_in(cast["guest"]).get("/chats/team/settings/")
    assert response.status_code == 403
    assert_strict(response)


# --------------------------------------------------------------------- the admin


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/admin/accounts/user/",
        "/admin/chatrooms/room/",
        "/admin/chatrooms/message/",
        "/admin/chatrooms/invite/",
    ],
)
def test_admin_pages(cast, url):
    response = signed_in(cast["staff"]).get(url)
    assert response.status_code == 200
    assert_strict(response)


def test_admin_change_forms(cast):
    client = signed_in(cast["staff"])
    for url in (
        reverse("admin:accounts_user_change", args=[cast["owner"].pk]),
        reverse("admin:chatrooms_room_change", args=[cast["room"].pk]),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert_strict(response)


def test_admin_sign_in_page():
    response = Client().get("/admin/login/")
    assert response.status_code == 200
    assert_strict(response)


def test_admin_change_lists_need_no_inline_style():
    # Django's change list adds an inline <style> when a ModelAdmin shows
    # actions neither on top nor at the bottom: none of ours does that.
    from django.contrib import admin

    for model_admin in admin.site._registry.values():
        assert model_admin.actions_on_top or model_admin.actions_on_bottom, model_admin


def test_limited_staff_permission_denied_in_admin(user_factory):
    clerk = user_factory(username="clerk", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_room"))
    response = signed_in(clerk).get("/admin/accounts/user/")
    assert response.status_code == 403
    assert_strict(response)


# --------------------------------------------------------------------- nonce, sockets, mode


def test_each_response_has_its_own_nonce(cast):
    client = signed_in(cast["owner"])
    first = assert_strict(client.get("/chats/team/"))
    second = assert_strict(client.get("/chats/team/"))
    assert first and second and first != second


def test_no_nonce_in_the_header_of_a_page_without_inline_code(cast):
    # An unused nonce would only widen the policy.
    response = signed_in(cast["owner"]).get("/chats/")
    assert "nonce-" not in response["Content-Security-Policy"]


def test_socket_origin_follows_the_scheme():
    factory = RequestFactory()
    assert socket_sources(factory.get("/", HTTP_HOST="testserver:8000")) == [
        "ws://testserver:8000",
        "wss://testserver:8000",
    ]
    assert socket_sources(factory.get("/", secure=True)) == ["wss://testserver"]
    assert socket_sources(factory.get("/", HTTP_HOST="evil.example")) == []


def test_https_page_allows_only_wss(cast):
    response = signed_in(cast["owner"]).get("/chats/team/", secure=True)
    policy = parse_policy(response["Content-Security-Policy"])
    assert policy["connect-src"] == ["'self'", "wss://testserver"]


def test_report_only_switches_the_header(settings, cast):
    policy = settings.CONTENT_SECURITY_POLICY
    settings.CONTENT_SECURITY_POLICY = None
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = policy
    response = signed_in(cast["owner"]).get("/chats/team/")
    nonce = assert_strict(response, header="Content-Security-Policy-Report-Only")
    assert nonce


# The environment read by project/settings.py, in a fresh interpreter, as a
# deployment starts; prints the headers of the sign-in page.
HEADERS = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
response = Client().get("/accounts/login/")
print(json.dumps({
    "status": response.status_code,
    "enforced": response.get("Content-Security-Policy"),
    "report_only": response.get("Content-Security-Policy-Report-Only"),
}))
"""


def headers_with(**env: str) -> dict:
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CHAT_CSP_") and k not in {"DATABASE_URL", "DJANGO_DEBUG"}
    }
    environ.update(DJANGO_SETTINGS_MODULE="project.settings", DATABASE_URL="sqlite://", **env)
    done = subprocess.run(
        [sys.executable, "-c", HEADERS],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_environment_enforces_by_default():
    headers = headers_with()
    assert headers["status"] == 200
    assert headers["report_only"] is None
    assert "frame-ancestors 'none'" in headers["enforced"]
    assert "report-uri" not in headers["enforced"]


def test_environment_switches_to_report_only_with_a_report_uri():
    headers = headers_with(CHAT_CSP_REPORT_ONLY="1", CHAT_CSP_REPORT_URI="/csp-reports/")
    assert headers["status"] == 200
    assert headers["enforced"] is None
    policy = parse_policy(headers["report_only"])
    assert policy["report-uri"] == ["/csp-reports/"]
    assert policy["script-src"] == ["'self'"] and policy["frame-ancestors"] == ["'none'"]


@pytest.mark.parametrize(
    "name, value",
    [
        ("CHAT_CSP_REPORT_ONLY", "maybe"),
        # A second directive smuggled in through the report address.
        ("CHAT_CSP_REPORT_URI", "/csp-reports/; script-src *"),
        ("CHAT_CSP_REPORT_URI", "/a /b"),
    ],
)
def test_environment_refuses_a_malformed_value(name, value):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_CSP_")}
    environ.update(DJANGO_SETTINGS_MODULE="project.settings", **{name: value})
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert f"ImproperlyConfigured: {name}=" in done.stderr, done.stderr


# --------------------------------------------------------------------- the templates themselves


TEMPLATE_RULES = [
    (re.compile(r"\sstyle\s*=", re.I), "a style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "an inline event handler"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
    (re.compile(r"<style(?![^>]*\snonce=\"\{\{ CSP_NONCE \}\}\")", re.I), "<style> without nonce"),
]
SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.I)


@pytest.mark.parametrize(
    "template", sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "templates").rglob("*.html"))
)
def test_templates_keep_to_the_policy(template):
    # Pages no test renders (password reset mails' landing pages, rare
    # errors) are held to the same rules by their source.
    source = (ROOT / template).read_text()
    source = re.sub(r"{% comment %}.*?{% endcomment %}", "", source, flags=re.S)
    for pattern, what in TEMPLATE_RULES:
        assert not pattern.search(source), f"{template}: {what}"
    for attributes in SCRIPT_TAG.findall(source):
        assert (
            "src=" in attributes
            or 'nonce="{{ CSP_NONCE }}"' in attributes
            or 'type="application/json"' in attributes
        ), f"{template}: <script{attributes}> is inline without the nonce"
