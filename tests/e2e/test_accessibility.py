"""axe-core on the pages people use most: no serious or critical violation.
And new messages are announced to screen readers."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import axe_violations, describe_violations

pytestmark = pytest.mark.e2e


def assert_accessible(page, what: str) -> None:
    violations = axe_violations(page)
    assert not violations, f"{what} ({page.url}):\n{describe_violations(violations)}"


def test_sign_in_and_sign_up_pages(people):
    visitor = people("visitor", account="none")
    visitor.page.goto("/accounts/login/")
    expect(visitor.page.get_by_role("button", name="Sign In")).to_be_visible()
    assert_accessible(visitor.page, "sign-in page")
    visitor.page.goto("/accounts/signup/")
    expect(visitor.page.get_by_role("button", name="Sign Up")).to_be_visible()
    assert_accessible(visitor.page, "sign-up page")


def test_lobby_room_and_profile_pages(people):
    nina = people("nina", display_name="Nina Simone")
    oscar = people("oscar", display_name="Oscar Peterson")
    slug = nina.enter_room("Jazz Club")
    oscar.enter_room("Listening Room")
    oscar.open_room(slug)
    nina.say("Anyone up for a jam session tonight?")
    oscar.say("Count me in, I'll bring the bass.")
    expect(nina.online.get_by_role("listitem")).to_have_count(2)

    # The room: connected, two people online, messages of both, own-message
    # actions, a typing indicator.
    oscar.composer.press_sequentially("What time")
    expect(nina.page.get_by_text(f"Oscar Peterson @{oscar.username} is typing…")).to_be_visible()
    assert_accessible(nina.page, "room page")

    # An open editor.
    mine = nina.message("jam session")
    mine.hover()
    mine.get_by_role("button", name="Edit message").click()
    expect(mine.get_by_role("textbox", name="Edit message")).to_be_focused()
    assert_accessible(nina.page, "room page, editing a message")
    mine.get_by_role("button", name="Cancel").click()

    # A message over the limit: the counter says so, Send explains in an
    # alert, and nothing is sent.
    nina.composer.fill("x" * 4001)
    expect(nina.page.get_by_text("4001 / 4000 characters: too long")).to_be_visible()
    expect(nina.composer).to_have_attribute("aria-invalid", "true")
    nina.send_button.click()
    alert = nina.page.get_by_role("alert").filter(has_text="too long")
    expect(alert).to_be_visible()
    assert_accessible(nina.page, "room page, a message too long")
    alert.get_by_role("button", name="Dismiss").click()
    expect(alert).to_have_count(0)
    expect(nina.composer).to_be_focused()
    expect(oscar.articles).to_have_count(2)

    # The lobby: rooms of mine (with unread and online counts), public rooms,
    # the forms.
    nina.page.goto("/chats/")
    expect(nina.page.get_by_role("link", name="Listening Room")).to_be_visible()
    assert_accessible(nina.page, "lobby")

    nina.page.goto("/accounts/profile/")
    assert_accessible(nina.page, "profile page")


def test_new_messages_are_announced(people):
    pia = people("pia")
    pia.enter_room("Announcements")
    log = pia.log
    expect(log).to_have_attribute("role", "log")  # implies aria-live=polite
    live = log.get_attribute("aria-live")
    assert live in (None, "polite", "assertive"), live  # never "off"
    expect(log).not_to_have_attribute("aria-busy", "true")  # busy only while loading
    expect(pia.status).to_have_attribute("role", "status")
    # The typing indicator is announced politely too, without stealing focus.
    expect(pia.page.locator("#chat-typing")).to_have_attribute("aria-live", "polite")
