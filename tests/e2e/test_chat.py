"""People chatting in real browsers: sign-up, live messages, presence, typing,
history, editing, deleting, the keyboard, and text that looks like HTML."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

TIME = r"\d{2}:\d{2}"


def test_two_people_sign_up_enter_the_same_room_and_chat(people):
    alice = people("alice")
    bob = people("bob", display_name="Bob Builder")

    slug = alice.enter_room("Design Review")
    assert slug == "design-review"
    assert bob.enter_room("Design Review") == slug  # the same room, by its name

    alice.say("Hi Bob, have you seen the new mockups?")
    seen = bob.message("Hi Bob, have you seen the new mockups?")
    expect(seen).to_have_count(1)
    expect(seen).to_have_accessible_name(re.compile(rf"^{alice.username}, {TIME}$"))

    bob.say("Yes! The sidebar looks much better.")
    reply = alice.message("Yes! The sidebar looks much better.")
    expect(reply).to_have_count(1)
    expect(reply).to_have_accessible_name(re.compile(rf"^Bob Builder, {TIME}$"))
    expect(reply).to_contain_text("Bob Builder")

    # Both see the whole conversation, in order, with nobody reloading.
    for person in (alice, bob):
        expect(person.articles).to_have_text(
            [
                re.compile("have you seen the new mockups"),
                re.compile("The sidebar looks much better"),
            ]
        )
    ids = alice.article_ids()
    assert ids == sorted(set(ids)) and bob.article_ids() == ids


def test_presence_and_typing(people):
    carol = people("carol", display_name="Carol Danvers")
    dave = people("dave")
    slug = carol.enter_room("Standup")
    expect(carol.online.get_by_role("listitem")).to_have_count(1)
    expect(carol.online).to_contain_text("Carol Danvers")

    dave.open_room(slug)
    expect(carol.online.get_by_role("listitem")).to_have_count(2)
    expect(carol.online.get_by_role("listitem").filter(has_text=dave.username)).to_be_visible()
    # Presence carries usernames: dave knows carol by hers until she speaks.
    expect(dave.online.get_by_role("listitem").filter(has_text=carol.username)).to_be_visible()

    # Typing shows "dave is typing…" to carol (never to dave himself).
    dave.composer.press_sequentially("I'm working on the")
    expect(carol.page.get_by_text(f"{dave.username} is typing…")).to_be_visible()
    expect(dave.page.get_by_text("is typing…")).to_have_count(0)
    # Sending the message ends it.
    dave.send_button.click()
    expect(carol.message("I'm working on the")).to_be_visible()
    expect(carol.page.get_by_text(f"{dave.username} is typing…")).to_have_count(0)
    # Once carol speaks, dave's list shows her display name.
    carol.say("Morning!")
    expect(dave.online.get_by_role("listitem").filter(has_text="Carol Danvers")).to_be_visible()

    # dave types again, then closes the page: he leaves the list, and his
    # typing goes with him.
    dave.composer.press_sequentially("brb")
    expect(carol.page.get_by_text(f"{dave.username} is typing…")).to_be_visible()
    dave.page.close()
    expect(carol.online.get_by_role("listitem")).to_have_count(1)
    expect(carol.online).not_to_contain_text(dave.username)
    expect(carol.page.get_by_text("is typing…")).to_have_count(0)


HISTORY = 320  # messages seeded; the page is 50


def test_history_loads_older_pages_down_to_the_beginning(people, site):
    erin = people("erin")
    slug = erin.enter_room("Archive")
    site.shell(
        "from accounts.models import User\n"
        "from chatrooms.models import Message, Room\n"
        f"room = Room.objects.get(slug={slug!r})\n"
        f"author = User.objects.get(username={erin.username!r})\n"
        "Message.objects.bulk_create(\n"
        '    Message(room=room, author=author, body=f"History message {n:03d}")\n'
        f"    for n in range(1, {HISTORY + 1})\n"
        ")\n"
    )
    erin.open_room(slug)  # a fresh page load: the latest page

    expect(erin.articles).to_have_count(50)
    expect(erin.articles.last).to_contain_text(f"History message {HISTORY:03d}")
    expect(erin.articles.first).to_contain_text(f"History message {HISTORY - 49:03d}")
    older = erin.page.get_by_role("button", name="Load older messages")
    beginning = erin.page.get_by_text("This is the beginning of the room")
    expect(older).to_be_visible()
    expect(beginning).to_be_hidden()

    # Scrolling to the top loads the page before.
    erin.log.hover()
    erin.page.mouse.wheel(0, -20_000)
    expect(erin.articles).to_have_count(100)
    expect(erin.articles.first).to_contain_text(f"History message {HISTORY - 99:03d}")

    # The button loads the rest, a page at a time, down to the first message.
    loaded = 100
    while loaded < HISTORY:
        older.click()
        loaded = min(HISTORY, loaded + 50)
        expect(erin.articles).to_have_count(loaded)
    expect(erin.articles.first).to_contain_text("History message 001")
    expect(beginning).to_be_visible()
    expect(older).to_be_hidden()
    ids = erin.article_ids()
    assert len(ids) == HISTORY and ids == sorted(set(ids))


PAYLOADS = [
    "<img src=x onerror=\"window.__xss = 1; alert('img')\">",
    "<script>window.__xss = 2; alert('script')</script>",
    "<svg onload=\"window.__xss = 3; alert('svg')\"></svg><b>bold?</b>",
    '<a href="javascript:window.__xss = 4">click me</a>',
]


def test_html_in_messages_and_names_is_shown_as_text_and_never_runs(people):
    frank = people("frank")
    grace = people("grace", display_name="<img src=y onerror=\"window.__xss = 5; alert('name')\">")
    dialogs: list[str] = []
    for person in (frank, grace):
        person.context.add_init_script("window.__xss = 0;")
        person.page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    slug = frank.enter_room("Security")
    grace.open_room(slug)

    for payload in PAYLOADS:
        frank.say(payload)
    grace.say("<i>not italic</i>")
    for person in (frank, grace):
        for payload in PAYLOADS:
            expect(person.message(payload)).to_have_count(1)
        expect(person.log.get_by_text(grace.display_name)).to_have_count(1)
        expect(person.online).to_contain_text(grace.display_name)
        # No element came out of the text.
        for tag in ("img", "script", "svg", "b", "i", "a"):
            expect(person.log.locator(tag)).to_have_count(0)
        expect(person.online.locator("img")).to_have_count(0)
    # A round trip after the payloads: an image error or a load event would
    # have fired by now.
    frank.say("after the payloads")
    expect(grace.message("after the payloads")).to_be_visible()
    for person in (frank, grace):
        assert person.page.evaluate("window.__xss") == 0
    assert dialogs == []


def test_edit_and_delete_reach_the_other_person(people):
    heidi = people("heidi", display_name="Heidi")
    ivan = people("ivan", display_name="Ivan")
    slug = heidi.enter_room("Lunch")
    ivan.open_room(slug)

    mine = heidi.say("Lunch at 12?")
    theirs = ivan.message("Lunch at 12?")
    expect(theirs).to_be_visible()
    # Ivan may not change Heidi's message (he is a member, not a moderator).
    expect(theirs.get_by_role("button", name="Edit message")).to_have_count(0)
    expect(theirs.get_by_role("button", name="Delete message")).to_have_count(0)
    message_id = mine.get_attribute("data-id")

    mine.hover()
    mine.get_by_role("button", name="Edit message").click()
    editor = mine.get_by_role("textbox", name="Edit message")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("Lunch at 12?")
    editor.fill("Lunch at 12:30?")
    mine.get_by_role("button", name="Save").click()
    expect(editor).to_have_count(0)
    for person in (heidi, ivan):
        edited = person.articles.filter(has_text="Lunch at 12:30?")
        expect(edited).to_have_count(1)
        expect(edited).to_contain_text("(edited)")
        assert edited.get_attribute("data-id") == message_id
        expect(person.message("Lunch at 12?")).to_have_count(0)

    # Cancel leaves it alone.
    mine = heidi.message("Lunch at 12:30?")
    mine.hover()
    mine.get_by_role("button", name="Edit message").click()
    mine.get_by_role("textbox", name="Edit message").fill("never sent")
    mine.get_by_role("button", name="Cancel").click()
    expect(mine.get_by_role("textbox", name="Edit message")).to_have_count(0)
    expect(mine).to_contain_text("Lunch at 12:30?")

    ivan.say("Sounds good")
    heidi.page.once("dialog", lambda dialog: dialog.accept())
    mine.hover()
    mine.get_by_role("button", name="Delete message").click()
    for person in (heidi, ivan):
        expect(person.message("Lunch at 12:30?")).to_have_count(0)
        expect(person.articles).to_have_count(1)
        expect(person.message("Sounds good")).to_be_visible()


def test_enter_sends_and_shift_enter_breaks_the_line(people):
    judy = people("judy")
    mallory = people("mallory")
    slug = judy.enter_room("Keyboard")
    mallory.open_room(slug)

    composer = judy.composer
    composer.click()
    judy.page.keyboard.press("Enter")  # nothing to send: nothing happens
    expect(composer).to_be_focused()
    judy.page.keyboard.type("first line")
    judy.page.keyboard.press("Shift+Enter")
    judy.page.keyboard.type("second line")
    expect(composer).to_have_value("first line\nsecond line")
    expect(judy.articles).to_have_count(0)

    judy.page.keyboard.press("Enter")
    sent = mallory.message("first line")
    expect(sent).to_have_count(1)
    assert "first line\nsecond line" in sent.inner_text()
    expect(judy.message("second line")).to_have_count(1)
    expect(composer).to_have_value("")
    expect(composer).to_be_focused()

    # Straight on with the next one, without touching the mouse.
    judy.page.keyboard.type("and another")
    judy.page.keyboard.press("Enter")
    expect(mallory.message("and another")).to_have_count(1)
    expect(composer).to_have_value("")
    expect(composer).to_be_focused()
