"""The Content-Security-Policy in a real browser: the pages work under it, and
what it forbids is refused and reported (which is what lets the `people`
fixture fail every other browser test on a violation)."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import Person

pytestmark = pytest.mark.e2e


def reported(person: Person, seconds: float = 5) -> list[str]:
    """The violations the person's pages reported, waiting for at least one; then forgets them."""
    deadline = time.monotonic() + seconds
    while not person.csp_violations and time.monotonic() < deadline:
        person.page.wait_for_timeout(50)
    found = list(person.csp_violations)
    person.csp_violations.clear()
    return found


def test_room_page_runs_under_the_policy(people, site):
    dana = people("dana")
    response = dana.page.goto("/chats/")
    policy = response.headers["content-security-policy"]
    # django-csp does not keep the directives in a fixed order.
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'" and "nonce-" not in policy
    dana.create_room("Policy Room")
    # The room page's import map ran with its nonce (the modules loaded, the
    # socket connected); the socket's origin is named in connect-src.
    response = dana.page.reload()
    policy = response.headers["content-security-policy"]
    assert "'nonce-" in policy
    assert f"ws://127.0.0.1:{site.port}" in policy
    dana.expect_connected()
    dana.say("hello under a strict policy")


def test_inline_script_and_style_are_refused_and_reported(people):
    visitor = people("visitor", account="none")
    visitor.page.goto("/accounts/login/")
    expect(visitor.page.get_by_role("button", name="Sign In")).to_be_visible()
    assert visitor.csp_violations == []

    visitor.page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.__ran = true";
          document.body.append(script);
        }"""
    )
    assert visitor.page.evaluate("window.__ran") is None
    found = reported(visitor)
    assert any("script-src" in line for line in found), found

    visitor.page.evaluate(
        """() => document.querySelector("h1").setAttribute("style", "color: rgb(255, 0, 0)")"""
    )
    heading = visitor.page.get_by_role("heading", name="Sign In")
    expect(heading).not_to_have_css("color", "rgb(255, 0, 0)")
    found = reported(visitor)
    assert any("style-src" in line for line in found), found
