"""The server restarts under open pages: they notice, reconnect by themselves,
and catch up on what was said meanwhile, with nothing shown twice. While a
page is offline its Online list is shown as unknown, its composer stays
usable (what is sent waits in the outbox) and "Reconnect now" skips the wait.

A module of its own: it restarts its module's server."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

# The client backs off 0.5 s doubling to 30 s (randomised between half and
# all of it): after an outage of a second or two it is back within a few.
RECONNECT_WITHIN_S = 6


def test_pages_reconnect_after_a_restart_and_catch_up(people, site):
    kate = people("kate", display_name="Kate")
    leo = people("leo", display_name="Leo")
    slug = kate.enter_room("Ops")
    leo.open_room(slug)
    kate.say("Deploying now")
    expect(leo.message("Deploying now")).to_be_visible()

    # Stored by a process outside this server's (embedded) channel layer, so
    # never broadcast to the open pages, as when a server dies between
    # storing and broadcasting: only the catch-up after reconnecting shows it.
    site.shell(
        "from accounts.models import User\n"
        "from chatrooms.models import Room\n"
        "from chatrooms.services import message_create\n"
        f"room = Room.objects.get(slug={slug!r})\n"
        f"leo = User.objects.get(username={leo.username!r})\n"
        "for text in ('While you were away 1', 'While you were away 2'):\n"
        "    message_create(room_id=room.id, user=leo, body=text)\n"
    )
    expect(kate.message("While you were away 1")).to_have_count(0)

    site.stop()
    for person in (kate, leo):
        expect(person.status).to_have_text(re.compile(r"^(Reconnecting in \d+ s…|Connecting…)$"))
        # Usable while offline: what is sent waits for the connection.
        expect(person.composer).to_be_enabled()
        expect(person.send_button).to_be_enabled()
    site.start()  # a new process, the same port and database
    started = time.monotonic()
    for person in (kate, leo):
        person.expect_connected(timeout=RECONNECT_WITHIN_S * 2000)
    # Within the backoff's bound (the timeout above); how fast is the benchmark's
    # business, not a test's: only printed.
    print(f"both pages reconnected {time.monotonic() - started:.1f} s after the server came back")

    for person in (kate, leo):
        expect(person.message("While you were away 1")).to_have_count(1)
        expect(person.message("While you were away 2")).to_have_count(1)

    # Live again, both ways.
    leo.say("Back online")
    expect(kate.message("Back online")).to_have_count(1)
    kate.say("Welcome back")
    expect(leo.message("Welcome back")).to_have_count(1)

    expected = [
        "Deploying now",
        "While you were away 1",
        "While you were away 2",
        "Back online",
        "Welcome back",
    ]
    for person in (kate, leo):
        expect(person.articles).to_have_count(len(expected))
        expect(person.articles).to_have_text([re.compile(re.escape(t)) for t in expected])
        ids = person.article_ids()
        assert ids == sorted(set(ids)), ids  # no duplicate, in order
    assert kate.article_ids() == leo.article_ids()
    expect(kate.online.get_by_role("listitem")).to_have_count(2)


def test_a_third_person_talks_while_one_page_is_cut_off(people, site):
    """One page loses its socket (the network drops, the others stay): what
    was said meanwhile appears once it is back, with no duplicates."""
    mia = people("mia", display_name="Mia").install_network_switch()
    ned = people("ned", display_name="Ned")
    olga = people("olga", display_name="Olga")
    slug = mia.enter_room("Field Notes")
    ned.open_room(slug)
    olga.open_room(slug)
    for n in range(3):
        ned.say(f"before {n}")
    expect(mia.articles).to_have_count(3)

    # Only mia's network drops: her socket is cut and new ones fail.
    mia.network_down()
    expect(mia.status).not_to_have_text("Connected")
    expect(mia.composer).to_be_enabled()
    expect(mia.online).to_have_class(re.compile(r"\bis-unknown\b"))
    expect(ned.online.get_by_role("listitem")).to_have_count(2)  # mia left
    for n in range(3):
        olga.say(f"meanwhile {n}")
    ned.say("meanwhile from ned")
    olga.message("meanwhile 0").hover()
    olga.message("meanwhile 0").get_by_role("button", name="Edit message").click()
    olga.message("meanwhile 0").get_by_role("textbox", name="Edit message").fill("meanwhile 0!")
    olga.message("meanwhile 0").get_by_role("button", name="Save").click()
    expect(ned.message("meanwhile 0!")).to_be_visible()

    mia.network_up()
    back = time.monotonic()
    mia.expect_connected(timeout=35_000)  # the backoff may have reached its cap
    print(f"mia reconnected {time.monotonic() - back:.1f} s after her network came back")
    expected = [
        "before 0",
        "before 1",
        "before 2",
        "meanwhile 0!",
        "meanwhile 1",
        "meanwhile 2",
        "meanwhile from ned",
    ]
    expect(mia.articles).to_have_text([re.compile(re.escape(t)) for t in expected])
    ids = mia.article_ids()
    assert ids == sorted(set(ids)) and ids == ned.article_ids()
    expect(ned.online.get_by_role("listitem")).to_have_count(3)


def online_count(person):
    return person.page.get_by_role("heading", name=re.compile(r"^Online \("))


def test_offline_the_list_is_unknown_the_composer_queues_and_reconnect_now_skips_the_wait(
    people, site
):
    pia = people("pia", display_name="Pia")
    quin = people("quin", display_name="Quin")
    slug = pia.enter_room("Night Shift")
    quin.open_room(slug)
    expect(pia.online.get_by_role("listitem")).to_have_count(2)
    expect(online_count(pia)).to_have_text("Online (2)")
    caption = pia.page.get_by_text("Offline: not up to date")
    expect(caption).to_be_hidden()
    expect(pia.online).not_to_have_class(re.compile(r"\bis-unknown\b"))

    site.stop()
    # The last list known stays, greyed and captioned: nobody is known to be online.
    expect(pia.online).to_have_class(re.compile(r"\bis-unknown\b"))
    expect(caption).to_be_visible()
    expect(online_count(pia)).to_have_text("Online (?)")
    expect(pia.online).to_have_accessible_description("Offline: not up to date")
    expect(pia.online.get_by_role("listitem")).to_have_count(2)

    # The composer stays usable: the message waits in the outbox, shown as not sent yet.
    expect(pia.composer).to_be_enabled()
    pia.composer.fill("Typed while offline")
    pia.send_button.click()
    expect(pia.composer).to_have_value("")
    held = pia.log.get_by_role("article", name="Pia, not sent yet")
    expect(held).to_have_count(1)
    expect(held).to_contain_text("Typed while offline")
    expect(
        pia.page.get_by_text("1 message not sent yet; it goes when the connection is back.")
    ).to_be_visible()

    # After a few failed tries the wait is long (8 s or more): "Reconnect now" skips it.
    reconnect = pia.page.get_by_role("button", name="Reconnect now")
    expect(pia.status).to_have_text(re.compile(r"^Reconnecting in ([89]|\d\d) s…$"), timeout=40_000)
    expect(reconnect).to_be_visible()
    waiting = int(re.search(r"\d+", pia.status.inner_text()).group())
    site.start()
    reconnect.click()
    # Well within the wait it cancelled (the next try was `waiting` seconds away).
    pia.expect_connected(timeout=max(1, waiting - 3) * 1000)
    expect(reconnect).to_be_hidden()

    # Sent once, with its client_id, after the hello: stored once, shown once.
    quin.expect_connected(timeout=RECONNECT_WITHIN_S * 6000)
    for person in (pia, quin):
        expect(person.message("Typed while offline")).to_have_count(1)
        ids = person.article_ids()
        assert ids == sorted(set(ids)), ids
    expect(held).to_have_count(0)
    assert (
        site.shell(
            "from chatrooms.models import Message\n"
            "print(Message.objects.filter(body='Typed while offline').count())\n"
        ).strip()
        == "1"
    )

    # The list is live again.
    expect(pia.online).not_to_have_class(re.compile(r"\bis-unknown\b"))
    expect(caption).to_be_hidden()
    expect(pia.online.get_by_role("listitem")).to_have_count(2)
    expect(online_count(pia)).to_have_text("Online (2)")


def test_after_a_kick_the_list_is_unknown_and_the_composer_closed(people):
    rae = people("rae", display_name="Rae")
    sam = people("sam", display_name="Sam")
    slug = rae.enter_room("Back Office")
    sam.open_room(slug)
    expect(sam.online.get_by_role("listitem")).to_have_count(2)
    expect(sam.online).not_to_have_class(re.compile(r"\bis-unknown\b"))

    rae.open_settings(slug)
    rae.member_action("Kick", sam.username, done="Sam was removed from the room.")
    sam.expect_closed("You have been removed from this room.")
    expect(sam.online).to_have_class(re.compile(r"\bis-unknown\b"))
    expect(online_count(sam)).to_have_text("Online (?)")
    expect(sam.page.get_by_text("Offline: not up to date")).to_be_visible()
    expect(sam.page.get_by_role("button", name="Reconnect now")).to_be_hidden()
