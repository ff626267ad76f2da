"""Moderation that cannot be taken back asks first, and an archived room stays
readable: the owner bans someone through the dialog (Cancel and Esc change
nothing), archives the room through it, finds the room under Archived in the
lobby, reads it (no composer, no socket) and unarchives it from its page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import ROOM_URL, SETTINGS_URL, axe_violations, describe_violations

pytestmark = pytest.mark.e2e


def test_the_owner_bans_and_archives_through_a_dialog_and_unarchives_from_the_room(people):
    oona = people("oona", display_name="Oona")
    pete = people("pete", display_name="Pete")
    quin = people("quin", display_name="Quin")
    slug = oona.create_room("Harbour Crew", topic="Shifts and tides")
    oona.say("Minutes are in the shared folder.")
    for person in (pete, quin):
        person.open_room(slug)  # a public room: opening it joins
    oona.open_settings(slug)
    page = oona.page
    ban = page.get_by_role("button", name=f"Ban: {pete.username}", exact=True)

    # Ban asks, naming the person and what it does; Cancel is focused and changes nothing.
    ban.click()
    dialog = page.get_by_role("dialog", name=f"Ban Pete @{pete.username}?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(
        "They are removed from Harbour Crew and cannot come back through any invite until unbanned."
    )
    cancel = dialog.get_by_role("button", name="Cancel", exact=True)
    expect(cancel).to_be_focused()
    violations = axe_violations(page)
    assert not violations, describe_violations(violations)
    cancel.click()
    expect(dialog).to_be_hidden()
    expect(ban).to_be_focused()
    # Esc cancels too.
    ban.click()
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page).to_have_url(SETTINGS_URL)
    expect(oona.member_row(pete.username)).to_contain_text("Member")
    expect(page.get_by_role("alert")).to_have_count(0)
    pete.expect_connected()  # still in the room

    # Confirmed: done, and pete's open page is closed.
    ban.click()
    dialog.get_by_role("button", name="Ban", exact=True).click()
    oona.expect_flash("Pete is banned from the room.")
    expect(oona.member_row(pete.username)).to_contain_text("Banned")
    expect(pete.composer).to_be_disabled()

    # Make owner says it cannot be undone (cancelled here).
    page.get_by_role("button", name=f"Make owner: {quin.username}", exact=True).click()
    handover = page.get_by_role("dialog", name=f"Make Quin @{quin.username} the owner?")
    expect(handover).to_contain_text("You become a moderator and cannot undo this yourself.")
    handover.get_by_role("button", name="Cancel", exact=True).click()
    expect(oona.member_row(quin.username)).to_contain_text("Member")

    # Archive asks too, then the room is read-only.
    page.get_by_role("button", name="Archive room", exact=True).click()
    archive = page.get_by_role("dialog", name="Archive Harbour Crew?")
    expect(archive).to_contain_text(
        "Nobody can post; members can still read it; you can unarchive it."
    )
    archive.get_by_role("button", name="Archive room", exact=True).click()
    oona.expect_flash("Room archived.")
    expect(quin.composer).to_be_disabled()  # open pages are closed

    # A member finds it under Archived and reads it: no composer, no socket, no Unarchive.
    quin.page.goto("/chats/")
    expect(
        quin.page.get_by_role("region", name="Your rooms").get_by_role("link", name="Harbour Crew")
    ).to_have_count(0)
    opened = quin.watch_sockets()
    quin.page.get_by_role("region", name="Archived").get_by_role(
        "link", name="Harbour Crew", exact=True
    ).click()
    expect(quin.page).to_have_url(ROOM_URL)
    expect(quin.page.get_by_text("This room is archived: read-only.")).to_be_visible()
    expect(quin.message("Minutes are in the shared folder.")).to_contain_text(
        f"Oona @{oona.username}"
    )
    expect(quin.composer).to_have_count(0)
    expect(quin.page.get_by_role("button", name="Unarchive room")).to_have_count(0)
    violations = axe_violations(quin.page)
    assert not violations, describe_violations(violations)
    # The banned one has no way in.
    assert pete.page.goto(f"/chats/{slug}/").status == 404

    # The owner unarchives from the room's own page and is back in a live room.
    page.goto("/chats/")
    page.get_by_role("region", name="Archived").get_by_role(
        "link", name="Harbour Crew", exact=True
    ).click()
    expect(oona.articles).to_have_count(1)
    page.get_by_role("button", name="Unarchive room", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/chats/{slug}/$"))
    oona.expect_flash("Room unarchived.")
    oona.expect_connected()
    expect(oona.message("Minutes are in the shared folder.")).to_be_visible()
    assert opened == []  # the archived page never opened a socket
