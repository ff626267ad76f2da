"""Layout, measured: nothing on the room page covers what people read, a
phone shows one message's actions at a time, and the admin fits a laptop.

Geometry from the browser's own boxes (Playwright's bounding_box, or
getBoundingClientRect), never screenshots.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.helpers import DESKTOP, PHONE

pytestmark = pytest.mark.e2e

LONG = (
    "A long message that fills the whole width of the log, line after line, so that"
    " anything drawn at the right-hand end of its row would sit on top of its words"
    " and hide them from the person reading: " + "words " * 40
)


def box(locator: Locator) -> dict:
    found = locator.bounding_box()
    assert found is not None, f"{locator} has no box (not rendered)"
    return found


def overlap(a: dict, b: dict) -> bool:
    """Whether two boxes share any area (touching edges do not count)."""
    return (
        min(a["x"] + a["width"], b["x"] + b["width"]) - max(a["x"], b["x"]) > 0.5
        and min(a["y"] + a["height"], b["y"] + b["height"]) - max(a["y"], b["y"]) > 0.5
    )


def text_boxes(page: Page, article: Locator) -> list[dict]:
    """The boxes of each line of a message's text, and of its name and time."""
    return article.evaluate(
        """(art) => {
          const out = [];
          for (const sel of [".chat-msg-text", ".chat-msg-author", ".chat-msg-time"]) {
            const el = art.querySelector(sel);
            // A continued message's name line is there for screen readers only.
            const screenReaderOnly = art.classList.contains("chat-msg--cont");
            if (!el || screenReaderOnly && sel !== ".chat-msg-text") continue;
            for (const r of el.getClientRects()) {
              if (r.width > 0 && r.height > 0) {
                out.push({x: r.x, y: r.y, width: r.width, height: r.height});
              }
            }
          }
          return out;
        }"""
    )


def seed(site, slug: str, username: str, bodies: list[str]) -> None:
    site.shell(
        "from accounts.models import User\n"
        "from chatrooms.models import Room\n"
        "from chatrooms.services import message_create\n"
        f"room = Room.objects.get(slug={slug!r})\n"
        f"user = User.objects.get(username={username!r})\n"
        f"for body in {bodies!r}:\n"
        "    message_create(room_id=room.id, user=user, body=body)\n"
    )


def test_hover_actions_never_cover_the_message(people):
    uma = people("uma", display_name="Uma")
    vic = people("vic", display_name="Vic")
    slug = uma.enter_room("Wide Words")  # uma owns it: Delete on every message
    vic.open_room(slug)
    vic.say(LONG)
    uma.say("short one")
    uma.say(LONG + " mine")  # continues uma's group: no name line above it

    shown = [uma.articles.nth(n) for n in range(3)]  # vic's long, uma's short, uma's long
    expect(uma.articles).to_have_count(3)
    expect(shown[2]).to_have_class(re.compile(r"\bchat-msg--cont\b"))
    for article, text in zip(shown, (LONG, "short one", LONG + " mine"), strict=True):
        expect(article).to_contain_text(text)
        article.hover()
        toolbar = article.locator(".chat-msg-actions")
        expect(toolbar).to_have_css("opacity", "1")
        expect(article.get_by_role("button", name="Delete message")).to_be_visible()
        bar = box(toolbar)
        lines = text_boxes(uma.page, article)
        assert lines, text
        covered = [line for line in lines if overlap(bar, line)]
        assert not covered, f"the actions {bar} cover {covered} of {text[:20]!r}"

    # Keyboard: focus alone shows them (no hover), with their names.
    uma.page.mouse.move(0, 0)
    article = uma.message("short one")
    expect(article.locator(".chat-msg-actions")).to_have_css("opacity", "0")
    article.get_by_role("button", name="Edit message").focus()
    expect(article.locator(".chat-msg-actions")).to_have_css("opacity", "1")
    uma.page.keyboard.press("Tab")
    expect(article.get_by_role("button", name="Delete message")).to_be_focused()


def test_load_older_sits_above_the_first_message(people, site):
    for viewport in ({"viewport": DESKTOP}, PHONE):
        wes = people("wes", **viewport)
        slug = wes.enter_room(f"Archive {viewport['viewport']['width']}")
        seed(site, slug, wes.username, [f"Old note {n}" for n in range(1, 61)])
        wes.open_room(slug)
        older = wes.page.get_by_role("button", name="Load older messages")
        expect(older).to_be_visible()
        expect(wes.articles).to_have_count(50)
        # The log scrolled to its top, measured in the same task as the scroll
        # (before the scroll event could load more).
        boxes = wes.log.evaluate(
            """(log) => {
              log.scrollTop = 0;
              const r = (el) => { const b = el.getBoundingClientRect();
                return {x: b.x, y: b.y, width: b.width, height: b.height}; };
              return {
                older: r(document.getElementById("chat-older")),
                first: r(log.querySelector("article")),
                log: r(log),
              };
            }"""
        )
        assert not overlap(boxes["older"], boxes["first"]), boxes
        assert not overlap(boxes["older"], boxes["log"]), boxes
        assert boxes["older"]["y"] + boxes["older"]["height"] <= boxes["first"]["y"] + 0.5, boxes
        # That scroll to the top loads the rest; then the button is gone.
        expect(wes.articles).to_have_count(60)
        expect(wes.page.get_by_text("This is the beginning of the room")).to_be_visible()
        expect(older).to_be_hidden()


def action(article: Locator, name: str) -> Locator:
    """A message's button, shown or not (a hidden one is out of the accessibility tree)."""
    return article.get_by_role("button", name=name, include_hidden=True)


def test_a_phone_shows_the_actions_of_the_tapped_message_only(people):
    xan = people("xan", display_name="Xan")
    yara = people("yara", display_name="Yara", **PHONE)
    slug = yara.enter_room("Pocket")  # yara owns it: she may delete any message
    xan.open_room(slug)
    for n in range(1, 4):
        xan.say(f"From the desk {n}")
    expect(yara.articles).to_have_count(3)

    # Every message has its Delete in the page, and none of them shows.
    deletes = action(yara.log, "Delete message")
    expect(deletes).to_have_count(3)
    for n in range(3):
        expect(deletes.nth(n)).to_be_hidden()

    def shown() -> int:
        return sum(d.is_visible() for d in deletes.all())

    first = yara.message("From the desk 1")
    second = yara.message("From the desk 2")
    first.locator(".chat-msg-text").tap()
    expect(action(first, "Delete message")).to_be_visible()
    expect(action(second, "Delete message")).to_be_hidden()
    assert shown() == 1

    # Another tap moves them; a tap on the same message hides them again.
    second.locator(".chat-msg-text").tap()
    expect(action(second, "Delete message")).to_be_visible()
    expect(action(first, "Delete message")).to_be_hidden()
    assert shown() == 1
    second.locator(".chat-msg-text").tap()
    expect(action(second, "Delete message")).to_be_hidden()
    assert shown() == 0

    # Delete, then Cancel in the dialog: the button keeps focus, and still
    # the next tap shows one message's actions only.
    first.locator(".chat-msg-text").tap()
    yara.page.once("dialog", lambda dialog: dialog.dismiss())
    action(first, "Delete message").tap()
    second.locator(".chat-msg-text").tap()
    expect(action(second, "Delete message")).to_be_visible()
    expect(action(first, "Delete message")).to_be_hidden()
    assert shown() == 1

    # The shown Delete works, by touch, and does not cover the text.
    button = action(second, "Delete message")
    for line in text_boxes(yara.page, second):
        assert not overlap(box(button), line)
    yara.page.once("dialog", lambda dialog: dialog.accept())
    button.tap()
    expect(xan.message("From the desk 2")).to_have_count(0)
    expect(yara.articles).to_have_count(2)
    assert shown() == 0

    # Her own message: a tap shows its Edit and Delete, and only those.
    mine = yara.say("From the phone")
    expect(action(mine, "Edit message")).to_have_count(1)
    expect(action(mine, "Edit message")).to_be_hidden()
    mine.locator(".chat-msg-text").tap()
    expect(action(mine, "Edit message")).to_be_visible()
    expect(action(mine, "Delete message")).to_be_visible()
    assert shown() == 1


def test_the_admin_has_one_accounts_section_and_fits_a_laptop(people, site):
    staff = site.create_user("boss", display_name="Site Admin", staff=True)
    site.shell(
        "from accounts.models import User\n"
        "User.objects.create_user('a-rather-long-username-for-a-person', "
        "'a.very.long.email.address.of.someone@a-long-domain-name.example.com', 'x' * 20,"
        " display_name='Somebody With A Really Quite Long Display Name Indeed')\n"
    )
    admin = people(staff, account="existing", viewport=DESKTOP)
    page = admin.page
    page.goto("/admin/")
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    sections = [
        s.strip().casefold()
        for s in page.locator("#content-main .module caption").all_inner_texts()
    ]
    assert len(sections) == len(set(sections)), f"sections named twice: {sections}"
    assert sum("account" in s for s in sections) <= 1, sections
    # Staff still find the users.
    page.get_by_role("link", name="Users", exact=True).click()  # in "People"
    expect(page.get_by_role("heading", name="Select user to change")).to_be_visible()
    expect(page.get_by_role("link", name="a-rather-long-username-for-a-person")).to_be_visible()

    width = page.evaluate("() => window.innerWidth")
    table = box(page.locator("#result_list"))
    assert table["x"] >= 0 and table["x"] + table["width"] <= width, (table, width)
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= width
    # Nor does it run off its own box (which would scroll it sideways).
    results = page.locator("#changelist .results")
    assert results.evaluate("el => el.scrollWidth <= el.clientWidth"), box(results)
    assert table["x"] + table["width"] <= box(results)["x"] + box(results)["width"] + 0.5
