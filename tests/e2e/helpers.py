"""The people and the server of the browser tests (fixtures: conftest.py).

`Site` is the server under test; `Person` is one person in a browser
context of their own, who finds things on the pages by role, label and text,
as assistive technology does: on the chat pages, the room settings page
(invite links, members) and the admin.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, WebSocketRoute, expect

from tests.live import PYTHON, ROOT, Server, free_port

CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "a-long-test-passphrase"
SCREENSHOTS = ROOT / "docs" / "screenshots"
VENDOR = Path(__file__).resolve().parent / "vendor"
DESKTOP = {"width": 1280, "height": 800}
# Playwright's waits (actions; expect() is set in conftest.py): generous,
# since CI machines are slow; a passing run never waits this long.
ACTION_TIMEOUT_MS = 15_000
EXPECT_TIMEOUT_MS = 10_000

ROOM_URL = re.compile(r"/chats/([\w-]+)/$")
LOBBY_URL = re.compile(r"/chats/$")
SETTINGS_URL = re.compile(r"/chats/([\w-]+)/settings/$")
INVITE_URL = re.compile(r"^http://127\.0\.0\.1:\d+/chats/invite/[\w-]{40,}/$")
SIGN_IN_URL = re.compile(r"/accounts/login/\?next=")
DEACTIVATE = "Deactivate: end their sessions and close their chats now"
# The Members table's buttons that ask in a dialog before they act.
ASKS_FIRST = {"Kick", "Ban", "Make owner"}

# Every Content-Security-Policy violation a page sees (enforced or
# report-only) goes to Python through this binding; the `people` fixture
# fails the test on any. Installed as an init script, which the policy does
# not govern, before any of the page's own scripts run.
CSP_BINDING = "__e2eCspViolation"
CSP_LISTENER = f"""
document.addEventListener("securitypolicyviolation", (event) => {{
  window.{CSP_BINDING}(
    `${{event.disposition}} ${{event.effectiveDirective}}: ${{event.blockedURI || "inline"}}` +
    ` at ${{event.sourceFile || document.URL}}:${{event.lineNumber}} ${{event.sample}}`
  );
}}, true);
"""


def field(label: str) -> re.Pattern:
    """A form field's label as the forms print it: "Password", "Password*" (required)."""
    return re.compile(rf"^\s*{re.escape(label)}\*?\s*$")


def unavailable(reason: str):
    """Skip for a missing tool on a laptop; fail when CI=true (CI must run it)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


# --------------------------------------------------------------------- the server


class Site:
    """The server under test, restartable on the same port and database."""

    def __init__(self, env: dict, log: Path):
        self.env = env
        self.log = log
        self.port = free_port()
        self.server: Server | None = None
        self._usernames: set[str] = set()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Site:
        self.server = Server(self.env, port=self.port, log=self.log).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def shell(self, code: str) -> str:
        """Run Python in `manage.py shell` against the server's database; its stdout."""
        done = subprocess.run(
            [PYTHON, "manage.py", "shell", "-v", "0", "-c", code],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def username(self, name: str) -> str:
        """`name`, or `name2`, `name3`… when a test in this module already took it."""
        candidate, n = name, 1
        while candidate in self._usernames:
            n += 1
            candidate = f"{name}{n}"
        self._usernames.add(candidate)
        return candidate

    def create_user(self, name: str, *, display_name: str = "", staff: bool = False) -> str:
        """An account made in the database (password PASSWORD, email confirmed); its username.

        `staff` makes a staff superuser, as `manage.py createsuperuser` would.
        Sign in with `people(username, account="existing")`.
        """
        username = self.username(name)
        self.shell(
            "from allauth.account.models import EmailAddress\n"
            "from accounts.models import User\n"
            f"user = User.objects.create_user({username!r}, {username + '@example.com'!r},"
            f" {PASSWORD!r}, display_name={display_name!r}, is_staff={staff!r},"
            f" is_superuser={staff!r})\n"
            "EmailAddress.objects.create(\n"
            "    user=user, email=user.email, verified=True, primary=True\n"
            ")\n"
        )
        return username

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Person:
    """One person: a browser context of their own, on the site under test."""

    def __init__(self, site: Site, context: BrowserContext, username: str):
        self.site = site
        self.context = context
        self.username = username
        self.display_name = username
        self.errors: list[str] = []
        self.csp_violations: list[str] = []
        context.expose_binding(CSP_BINDING, self._csp_violation)
        context.add_init_script(CSP_LISTENER)
        self.page = self.new_page()

    # -- the network

    def install_network_switch(self) -> Person:
        """Route this person's sockets so that `network_down()` can cut them.

        The sockets stay real (the page opens them to the server); Playwright
        only holds both ends so that it can close them as a dropped network
        would. Call before opening the room.
        """
        self._network_up = True
        self._sockets: list[tuple[WebSocketRoute, WebSocketRoute]] = []
        self.context.route_web_socket(re.compile(r"/ws/"), self._route_socket)
        return self

    def _route_socket(self, page_side: WebSocketRoute) -> None:
        if not self._network_up:
            page_side.close(code=1011, reason="network down")
            return
        self._sockets.append((page_side, page_side.connect_to_server()))

    def network_down(self) -> None:
        """Cut the open sockets and refuse new ones (pages and HTTP go offline too)."""
        self._network_up = False
        for page_side, server_side in self._sockets:
            # The page's real socket closes (a browser may only send 1000 or
            # 3000-4999); the page is told 1011, as after a broken network.
            server_side.close()
            page_side.close(code=1011, reason="network down")
        self._sockets.clear()
        self.context.set_offline(True)

    def network_up(self) -> None:
        self._network_up = True
        self.context.set_offline(False)

    def new_page(self) -> Page:
        page = self.context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{self.username}: {error}"))
        # Chromium also writes each violation to the console ("Refused to
        # execute inline script because it violates the following Content
        # Security Policy directive..."), including any the event missed.
        page.on("console", self._console)
        return page

    def _csp_violation(self, source: dict, detail: str) -> None:
        self.csp_violations.append(f"{self.username}: {source['page'].url}: {detail}")

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text:
            self.csp_violations.append(f"{self.username}: console: {message.text}")

    # -- accounts

    def sign_up(self, *, here: bool = False, lands: re.Pattern = LOBBY_URL) -> Person:
        """Through the sign-up form: /accounts/signup/, or the one open now (`here`)."""
        page = self.page
        if not here:
            page.goto("/accounts/signup/")
        expect(page.get_by_role("heading", name="Sign Up")).to_be_visible()
        page.get_by_label(field("Username")).fill(self.username)
        page.get_by_label(field("Email")).fill(f"{self.username}@example.com")
        page.get_by_label(field("Password")).fill(PASSWORD)
        page.get_by_label(field("Password (again)")).fill(PASSWORD)
        page.get_by_role("button", name="Sign Up").click()
        expect(page).to_have_url(lands)
        return self

    def sign_in(self) -> Person:
        page = self.page
        page.goto("/accounts/login/")
        page.get_by_label(field("Login")).fill(self.username)
        page.get_by_label(field("Password")).fill(PASSWORD)
        page.get_by_role("button", name="Sign In").click()
        expect(page).to_have_url(LOBBY_URL)
        return self

    def set_display_name(self, name: str) -> Person:
        page = self.page
        page.goto("/accounts/profile/")
        page.get_by_label(field("Display name")).fill(name)
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_role("alert").filter(has_text="Your profile was saved.")).to_be_visible()
        self.display_name = name
        return self

    # -- rooms

    def enter_room(self, name: str) -> str:
        """Through the lobby's "enter any room name" box; the room's slug."""
        page = self.page
        page.goto("/chats/")
        page.get_by_label("What chat room would you like to enter?").fill(name)
        page.get_by_role("button", name="Enter", exact=True).click()
        expect(page).to_have_url(ROOM_URL)
        self.expect_connected()
        return ROOM_URL.search(page.url)[1]

    def create_room(self, name: str, *, topic: str = "", private: bool = False) -> str:
        """Through the lobby's "Create a room" form; lands in the room; its slug."""
        page = self.page
        page.goto("/chats/")
        form = page.get_by_role("region", name="Create a room")
        form.get_by_label(field("Name")).fill(name)
        form.get_by_label(field("Topic")).fill(topic)
        form.get_by_label(field("Private")).set_checked(private)
        form.get_by_role("button", name="Create room").click()
        expect(page).to_have_url(ROOM_URL)
        expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
        self.expect_connected()
        return ROOM_URL.search(page.url)[1]

    def open_room(self, slug: str) -> Person:
        self.page.goto(f"/chats/{slug}/")
        self.expect_connected()
        return self

    # -- the room settings page (owners and moderators)

    def open_settings(self, slug: str = "") -> Person:
        """By the open room page's "Room settings" link, or by address (`slug`)."""
        page = self.page
        if slug:
            page.goto(f"/chats/{slug}/settings/")
        else:
            page.get_by_role("link", name="Room settings").click()
        expect(page).to_have_url(SETTINGS_URL)
        expect(page.get_by_role("heading", name="Members", exact=True)).to_be_visible()
        return self

    def expect_flash(self, text: str) -> None:
        """A success or error message at the top of the page (a Bootstrap alert)."""
        expect(self.page.get_by_role("alert").filter(has_text=text)).to_be_visible()

    @property
    def invite_links(self) -> Locator:
        """The live links' "Invite link" boxes on the settings page, newest first."""
        return self.page.get_by_role("textbox", name="Invite link")

    def links_shown(self) -> list[str]:
        return [box.input_value() for box in self.invite_links.all()]

    def create_invite(self, *, expires: str = "7 days", max_uses: int | None = None) -> str:
        """With the settings page's form; the new link, read from its "Invite link" box."""
        before = self.links_shown()
        section = self.page.get_by_role("region", name="Invite links")
        section.get_by_label(field("Expires after")).select_option(label=expires)
        section.get_by_label(field("Max uses")).fill("" if max_uses is None else str(max_uses))
        section.get_by_role("button", name="Create invite link").click()
        self.expect_flash("Invite link created.")
        expect(self.invite_links).to_have_count(len(before) + 1)
        link = self.invite_links.first.input_value()  # newest first
        assert INVITE_URL.match(link), link
        assert link not in before
        return link

    def invite_item(self, link: str) -> Locator:
        """The settings page's entry of one live link (its box, Copy link, Revoke, uses)."""
        items = self.page.get_by_role("list", name="Live invite links").get_by_role("listitem")
        for item in items.all():
            if item.get_by_role("textbox", name="Invite link").input_value() == link:
                return item
        raise AssertionError(f"{link} is not among the live links {self.links_shown()}")

    def member_row(self, username: str) -> Locator:
        """The Members table's row of `username` (shown as "Name @username")."""
        return self.page.get_by_role("row").filter(
            has=self.page.get_by_role("rowheader").filter(has_text=f"@{username}")
        )

    def member_action(self, label: str, username: str, *, done: str) -> None:
        """Press "<label>: <username>" in the Members table; `done` is the flash that says so.

        Kick, Ban and Make owner ask first (static/chat/pages/confirm.js): this
        confirms in the dialog; tests/e2e/test_moderation_ui.py tests the dialog."""
        self.page.get_by_role("button", name=f"{label}: {username}", exact=True).click()
        if label in ASKS_FIRST:
            dialog = self.page.get_by_role("dialog")
            expect(dialog).to_contain_text(f"@{username}")
            dialog.get_by_role("button", name=label, exact=True).click()
        expect(self.page).to_have_url(SETTINGS_URL)
        self.expect_flash(done)

    # -- the admin (staff)

    def deactivate_in_admin(self, username: str) -> None:
        """The users list's "Deactivate" action, on `username` alone."""
        self._user_action_in_admin(
            username, DEACTIVATE, done="Deactivated; their open chats were closed."
        )

    def reactivate_in_admin(self, username: str) -> None:
        self._user_action_in_admin(username, "Reactivate", done="Reactivated.")

    def _user_action_in_admin(self, username: str, action: str, *, done: str) -> None:
        page = self.page
        page.goto("/admin/accounts/user/")
        page.get_by_role(
            "checkbox", name=f"Select this object for an action - {username}", exact=True
        ).check()
        # The admin wraps the select in its label: "Action: ---------…".
        page.get_by_role("combobox", name=re.compile(r"^Action:")).select_option(label=action)
        page.get_by_role("button", name="Go", exact=True).click()
        expect(page.get_by_text(done)).to_be_visible()

    # -- the room page, found as assistive technology finds it

    @property
    def log(self) -> Locator:
        return self.page.get_by_role("log", name="Messages")

    @property
    def articles(self) -> Locator:
        return self.log.get_by_role("article")

    def message(self, text: str) -> Locator:
        return self.articles.filter(has_text=text)

    @property
    def composer(self) -> Locator:
        return self.page.get_by_role("textbox", name="Message", exact=True)

    @property
    def send_button(self) -> Locator:
        return self.page.get_by_role("button", name="Send", exact=True)

    @property
    def online(self) -> Locator:
        return self.page.get_by_role("list", name="Online")

    @property
    def status(self) -> Locator:
        return self.page.get_by_role("status")

    def expect_connected(self, timeout: float = 15_000) -> None:
        expect(self.status).to_have_text("Connected", timeout=timeout)
        expect(self.composer).to_be_enabled()

    def watch_sockets(self) -> list[str]:
        """The addresses of the WebSockets this page opens from now on (a live list)."""
        opened: list[str] = []
        self.page.on("websocket", lambda socket: opened.append(socket.url))
        return opened

    def expect_closed(self, why: str) -> None:
        """The server closed the room to this page for good: it says `why` and stops."""
        expect(self.page.get_by_role("alert").filter(has_text=why)).to_be_visible()
        expect(self.status).to_have_text("Disconnected")
        expect(self.composer).to_be_disabled()
        expect(self.send_button).to_be_disabled()

    def expect_stays_closed(self, opened: list[str], seconds: float = 3) -> None:
        """Still closed `seconds` later, with no new socket (`opened`: watch_sockets())."""
        # Letting time pass is the point: the client's first reconnect would
        # come within 0.5 s, and its countdown would show at once.
        self.page.wait_for_timeout(seconds * 1000)
        expect(self.status).not_to_have_text("Connected")
        expect(self.status).to_have_text("Disconnected")
        expect(self.composer).to_be_disabled()
        assert opened == [], f"{self.username}'s page opened sockets again: {opened}"

    def say(self, text: str) -> Locator:
        """Send with the Send button; the message once it is shown (stored and echoed)."""
        self.composer.fill(text)
        self.send_button.click()
        shown = self.message(text).last
        expect(shown).to_be_visible()
        return shown

    def article_ids(self) -> list[int]:
        return self.articles.evaluate_all("els => els.map((el) => Number(el.dataset.id))")


# --------------------------------------------------------------------- accessibility

AXE = VENDOR / "axe.min.js"  # axe-core 4.14.1 from npm (MPL-2.0), vendored
AXE_URL = "/static/__e2e__/axe.min.js"
SERIOUS = ("serious", "critical")


def axe_violations(page: Page, impacts: tuple[str, ...] = SERIOUS) -> list[dict]:
    """axe-core's violations of `impacts` on the page as it is now."""
    # Settle first: colours halfway through a transition (a hover's fade-in)
    # are not what anyone reads.
    page.evaluate(
        "() => Promise.all(document.getAnimations()"
        ".filter((a) => a.effect && a.effect.getComputedTiming().endTime !== Infinity)"
        ".map((a) => a.finished))"
    )
    if not page.evaluate("typeof window.axe === 'object'"):
        # From the site's own origin (Playwright answers the request), as
        # script-src 'self' allows: an inline copy would be refused.
        page.route(AXE_URL, lambda route: route.fulfill(path=AXE, content_type="text/javascript"))
        page.add_script_tag(url=AXE_URL)
    result = page.evaluate("() => axe.run(document, { resultTypes: ['violations'] })")
    return [v for v in result["violations"] if v.get("impact") in impacts]


def describe_violations(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"][:5]:
            lines.append(f"    {node['target']}: {node.get('failureSummary', '')!r}")
            lines.append(f"    {node['html'][:200]}")
    return "\n".join(lines)


# --------------------------------------------------------------------- phones

PHONE = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 1,
}


def page_scrolls(page: Page) -> bool:
    """Whether the page itself (not a region in it) scrolls, or is scrolled."""
    return page.evaluate(
        "() => window.scrollY > 0 ||"
        " document.scrollingElement.scrollHeight > window.innerHeight + 1"
    )
