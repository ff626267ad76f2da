"""A phone (390x844, touch): reading and sending work, the composer is on
screen without scrolling the page, own-message actions need no hover (a tap)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import PHONE, page_scrolls

pytestmark = pytest.mark.e2e


def test_a_phone_reads_and_sends(people, site):
    sara = people("sara", display_name="Sara")
    theo = people("theo", display_name="Theo", **PHONE)
    slug = sara.enter_room("On the Road")
    # Enough earlier messages that the log scrolls.
    site.shell(
        "from accounts.models import User\n"
        "from chatrooms.models import Room\n"
        "from chatrooms.services import message_create\n"
        f"room = Room.objects.get(slug={slug!r})\n"
        f"sara = User.objects.get(username={sara.username!r})\n"
        "for n in range(1, 31):\n"
        "    message_create(room_id=room.id, user=sara, body=f'Earlier note {n}')\n"
    )
    theo.open_room(slug)
    expect(theo.articles).to_have_count(30)
    expect(theo.online.get_by_role("listitem")).to_have_count(2)

    # The newest message, the composer and Send are on screen, and the page
    # itself does not scroll: only the log does.
    expect(theo.message("Earlier note 30")).to_be_in_viewport()
    expect(theo.composer).to_be_in_viewport()
    expect(theo.send_button).to_be_in_viewport()
    assert not page_scrolls(theo.page)
    assert theo.log.evaluate("el => el.scrollHeight > el.clientHeight")

    # Live from the desktop…
    sara.say("Where are you now?")
    expect(theo.message("Where are you now?")).to_be_in_viewport()

    # …and back from the phone, by touch.
    theo.composer.tap()
    theo.page.keyboard.type("On the train, there in 20 minutes")
    theo.send_button.tap()
    sent = theo.message("On the train, there in 20 minutes")
    expect(sent).to_be_in_viewport()
    expect(sara.message("On the train, there in 20 minutes")).to_have_count(1)
    expect(theo.composer).to_have_value("")
    expect(theo.composer).to_be_in_viewport()
    assert not page_scrolls(theo.page)

    # No hover on a touch screen: a tap on the message shows its actions
    # (tests/e2e/test_layout.py: only that message's).
    sent.locator(".chat-msg-text").tap()
    expect(sent.get_by_role("button", name="Edit message")).to_be_visible()
    expect(sent.get_by_role("button", name="Edit message")).to_have_css("opacity", "1")
    sent.get_by_role("button", name="Edit message").tap()
    editor = sent.get_by_role("textbox", name="Edit message")
    editor.fill("On the train, there in 15 minutes")
    sent.get_by_role("button", name="Save").tap()
    expect(sara.message("there in 15 minutes")).to_contain_text("(edited)")
