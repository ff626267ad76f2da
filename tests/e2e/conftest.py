"""Browser tests: people in real Chromium pages talking through a real daphne.

Fixtures, from the outside in:

- `site` (per module): one daphne process from tests/live.py on a fresh
  database (SQLite, or PostgreSQL when DATABASE_URL names it), embedded
  channel layer. `site.restart()` stops it and starts a new process on the
  same port and database; `site.shell(code)` runs Python in `manage.py shell`
  with the server's environment (seeding, inspecting).
- `browser` (per module): Debian's Chromium driven by Playwright (never a
  downloaded browser). Missing Chromium skips with the reason, and fails
  when CI=true.
- `people` (per test): `people("alice", display_name="Alice Liddell")` opens
  a new browser context (a person with their own cookies), signs them up
  through the real sign-up form and returns a `Person` (tests/e2e/helpers.py).
  Its contexts close at the end of the test; an uncaught JavaScript error or
  a Content-Security-Policy violation (the server sends its real, strict
  policy) on any of its pages fails the test; a failing test leaves
  screenshots of every page and prints the server log's tail.

The tests are plain `def` functions on Playwright's sync API: pytest-asyncio
runs no event loop around them, so the two never meet.
"""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.e2e.helpers import (
    ACTION_TIMEOUT_MS,
    CHROMIUM,
    DESKTOP,
    EXPECT_TIMEOUT_MS,
    LAUNCH_ARGS,
    Person,
    Site,
    unavailable,
)
from tests.live import fresh_database, server_env

expect.set_options(timeout=EXPECT_TIMEOUT_MS)


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: browser tests (Chromium + Playwright, a real server)")


_REPORTS = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


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


@pytest.fixture
def people(request, browser: Browser, site: Site, tmp_path):
    """people(name, display_name="", account="new", **context options) -> Person.

    account="new" signs up through the form (as `name`, or `name2`… when a
    test of the module took it); "existing" signs in as `name`, an account the
    test made (e.g. with `site.shell`, password PASSWORD); "none" stays a
    signed-out visitor. Context options go to Playwright's new_context
    (viewport, is_mobile, has_touch…).
    """
    made: list[Person] = []

    def make(name: str, *, display_name: str = "", account: str = "new", **options) -> Person:
        assert account in {"new", "existing", "none"}, account
        options.setdefault("viewport", DESKTOP)
        options.setdefault("locale", "en-US")
        options.setdefault("timezone_id", "UTC")
        context = browser.new_context(base_url=site.base, **options)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        person = Person(site, context, name if account == "existing" else site.username(name))
        made.append(person)
        if account == "new":
            person.sign_up()
        elif account == "existing":
            person.sign_in()
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
    violations = [v for person in made for v in person.csp_violations]
    for person in made:
        person.context.close()
    assert not errors, f"uncaught JavaScript errors: {errors}"
    assert not violations, "Content-Security-Policy violations:\n" + "\n".join(violations)
