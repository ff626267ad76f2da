"""Browser tests: people in real Chromium pages talking through a real daphne.

Fixtures, from the outside in:

- `site` (per module): one daphne process from tests/live.py on a fresh
  database (SQLite, or PostgreSQL when DATABASE_URL names it), embedded
  channel layer. `site.restart()` stops it and starts a new process on the
  same port and database; `site.shell(code)` runs Python in `manage.py shell`
  with the server's environment (seeding, inspecting).
- `browser` (per module): Debian's Chromium driven by Playwright. Missing
  Chromium skips with the reason, and fails when CI=true.
- `people` (per test): `people("alice", display_name="Alice Liddell")` opens
  a new browser context (a person with their own cookies), signs them up
  through the real sign-up form and returns a `Person`. Its contexts close at
  the end of the test; an uncaught JavaScript error on any of its pages fails
  the test; a failing test leaves screenshots and the server log's tail.

Later scenarios (invite links, kick, deactivation) add helpers to `Person`
or `Site` and use the same fixtures.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    WebSocketRoute,
    expect,
    sync_playwright,
)

from tests.live import PYTHON, ROOT, Server, free_port, fresh_database, server_env

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
# Playwright's waits: generous, since CI machines are slow; a passing run
# never waits this long.
ACTION_TIMEOUT_MS = 15_000
expect.set_options(timeout=10_000)

ROOM_URL = re.compile(r"/chats/([\w-]+)/$")
LOBBY_URL = re.compile(r"/chats/$")


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: browser tests (Chromium + Playwright, a real server)")


_REPORTS = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


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

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    with fresh_database(tmp) as url:
        # allauth's sign-up limit (20 a minute from one address) is not under
        # test here, and a module signs up more people than that.
        site = Site(server_env(url, ACCOUNT_RATE_LIMITS="0"), log=tmp / "server.log").start()
        try:
            yield site
        finally:
            site.stop()


# --------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        unavailable(f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Person:
    """One person: a browser context of their own, on the site under test."""

    def __init__(self, site: Site, context: BrowserContext, username: str):
        self.site = site
        self.context = context
        self.username = username
        self.display_name = username
        self.errors: list[str] = []
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
        print("DEBUG sockets", len(self._sockets))
        for page_side, server_side in self._sockets:
            server_side.close(code=1001, reason="network down")
            page_side.close(code=1011, reason="network down")
        self._sockets.clear()
        self.context.set_offline(True)

    def network_up(self) -> None:
        self._network_up = True
        self.context.set_offline(False)

    def new_page(self) -> Page:
        page = self.context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{self.username}: {error}"))
        return page

    # -- accounts

    def sign_up(self) -> Person:
        page = self.page
        page.goto("/accounts/signup/")
        page.get_by_label(field("Username")).fill(self.username)
        page.get_by_label(field("Email")).fill(f"{self.username}@example.com")
        page.get_by_label(field("Password")).fill(PASSWORD)
        page.get_by_label(field("Password (again)")).fill(PASSWORD)
        page.get_by_role("button", name="Sign Up").click()
        expect(page).to_have_url(LOBBY_URL)
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

    def open_room(self, slug: str) -> Person:
        self.page.goto(f"/chats/{slug}/")
        self.expect_connected()
        return self

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

    def say(self, text: str) -> Locator:
        """Send with the Send button; the message once it is shown (stored and echoed)."""
        self.composer.fill(text)
        self.send_button.click()
        shown = self.message(text).last
        expect(shown).to_be_visible()
        return shown

    def article_ids(self) -> list[int]:
        return self.articles.evaluate_all("els => els.map((el) => Number(el.dataset.id))")


@pytest.fixture
def people(request, browser: Browser, site: Site, tmp_path):
    """people("alice", display_name=..., sign_up=True, **context options) -> Person."""
    made: list[Person] = []

    def make(name: str, *, display_name: str = "", sign_up: bool = True, **options) -> Person:
        options.setdefault("viewport", DESKTOP)
        options.setdefault("locale", "en-US")
        options.setdefault("timezone_id", "UTC")
        context = browser.new_context(base_url=site.base, **options)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        person = Person(site, context, site.username(name))
        made.append(person)
        if sign_up:
            person.sign_up()
        if display_name:
            person.set_display_name(display_name)
        return person

    yield make

    report = request.node.stash.get(_REPORTS, {}).get("call")
    if report is not None and report.failed:
        for person in made:
            for n, page in enumerate(person.context.pages):
                shot = tmp_path / f"failure-{person.username}-{n}.png"
                try:
                    page.screenshot(path=shot)
                    print(f"screenshot: {shot} ({page.url})")
                except Exception as error:  # noqa: BLE001 - best effort
                    print(f"no screenshot of {person.username}'s page: {error}")
        print(f"server log ({site.log}):\n{site.log_tail()}")
    errors = [error for person in made for error in person.errors]
    for person in made:
        person.context.close()
    assert not errors, f"uncaught JavaScript errors: {errors}"
