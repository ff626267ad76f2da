"""The README's screenshots, written by the browser from a seeded team:
docs/screenshots/lobby.png and room.png (1280x800), settings.png (1280
wide, the whole page) and phone.png (390x844).

Made on request, by `make screenshots` (pytest runs this file by name); not a
test module, so `make test` never collects it and never rewrites docs/. What
these pages show is asserted by the browser tests (test_lobby_and_settings.py,
test_chat.py, test_phone.py, test_invites.py); the checks here only make sure
each picture shows what it should before it is taken.

The conversation is stored with fixed times and the browsers' clocks start
at a fixed moment, so that a run without changes to the pages writes the
same pictures again (and git sees nothing new). The invite links have fixed
tokens and never expire, and show the address of a deployed site rather
than the test server's random port.
"""

from __future__ import annotations

import datetime as dt
import os
import re

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import CHROMIUM, PASSWORD, PHONE, SCREENSHOTS, Site

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def _chromium_required():
    """Asked for by name: a missing browser is an error here, never a skip."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM} to take the screenshots (apt-get install chromium)")


NOW = dt.datetime(2026, 3, 12, 10, 5, tzinfo=dt.UTC)  # the browsers' "now"

TEAM = {
    "maya": "Maya Chen",
    "tom": "Tom Okafor",
    "priya": "Priya Patel",
    "sam": "Sam Rivera",
    "lena": "Lena Fischer",
}

# (minutes before NOW, author, text)
RELEASE_CHAT = [
    (52, "priya", "Morning! Release 2.4 checklist is pinned in the tracker. Three blockers left."),
    (50, "priya", "1. the invoices migration\n2. the flaky upload test\n3. release notes"),
    (47, "tom", "I'll take the migration. Rehearsed it on staging yesterday: 4 minutes, no locks."),
    (45, "maya", "Great. I'll write the release notes if someone sends me the merged PRs."),
    (44, "sam", "Sending it now."),
    (31, "sam", "The upload test fails only when two runs share the temp folder. Fix in review."),
    (29, "tom", "Approved, nice catch."),
    (12, "priya", "Customer success asked whether the new export is in 2.4: it is, right?"),
    (11, "maya", "Yes, behind the flag for the first week, then on for everyone."),
    (9, "tom", "Migration is done on staging again with today's data: 3 min 40 s."),
    (6, "maya", "Release notes draft is up for review. Ship Friday at 10:00?"),
]
GENERAL_CHAT = [
    (240, "lena", "The coffee machine on the 3rd floor is fixed!"),
    (95, "priya", "All-hands moved to Thursday 16:00."),
    (80, "sam", "Reminder: the office is closed Monday for the move."),
    (20, "lena", "Lunch order closes at 11:30, the form is in #random."),
]


@pytest.fixture(scope="module")
def team(site):
    """Five people, six rooms and a morning's conversation, stored directly."""
    script = f"""
import datetime as dt
from allauth.account.models import EmailAddress
from django.contrib.auth.hashers import make_password
from accounts.models import User
from chatrooms.models import Membership, Message
from chatrooms.services import room_create

NOW = dt.datetime.fromisoformat({NOW.isoformat()!r})
people = {{}}
password = make_password({PASSWORD!r})  # hashed once: hashing is slow on purpose
for username, name in {TEAM!r}.items():
    user = User.objects.create(
        username=username, email=f"{{username}}@example.com", password=password,
        display_name=name,
    )
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    people[username] = user

def room(owner, name, topic="", members=(), is_private=False):
    made = room_create(user=people[owner], name=name, topic=topic, is_private=is_private)
    for member in members:
        Membership.objects.create(room=made, user=people[member])
    return made

def talk(room, lines):
    for minutes, author, body in lines:
        message = Message.objects.create(room=room, author=people[author], body=body)
        Message.objects.filter(pk=message.pk).update(
            created_at=NOW - dt.timedelta(minutes=minutes)
        )
    return Message.objects.filter(room=room).order_by("id")

release = room(
    "maya", "Release 2.4", "Shipping Friday: blockers, reviews and release notes",
    members=("tom", "priya", "sam"),
)
talk(release, {RELEASE_CHAT!r})
general = room(
    "priya", "General", "Company-wide news and chatter", members=("maya", "tom", "sam", "lena")
)
said = talk(general, {GENERAL_CHAT!r})
Membership.objects.filter(room=general, user=people["maya"]).update(last_read_id=said[0].id)
design = room("sam", "Design", "Mockups, critique and the great icon debate", members=("maya",))
talk(design, [(30, "sam", "New empty-state illustrations are in Figma.")])
room("priya", "Leadership", "Planning and hiring", members=("maya",), is_private=True)
room("lena", "Random", "Lunch spots, cats and weekend plans", members=("sam",))
room("tom", "Support rotation", "Who is on call this week, and handovers")
print(release.slug)
"""
    return {"release": site.shell(script).strip()}


# (token, created by, minutes before NOW, max uses, uses)
INVITES = [
    ("q7Hc2LxV9pTzR4mWnB8sYdKf3GjA6uEiNo1rXbZt5vM", "maya", 300, None, 3),
    ("Wd4nP8kRt2YhLs6FzJq9CmVx3BgN7eTaKu5oHiSp1rQ", "priya", 40, 10, 2),
]
SITE_ADDRESS = "https://chat.example.com"


def settings_team(site: Site, slug: str) -> None:
    """The release room's settings: priya moderates, two live invite links."""
    site.shell(f"""
import datetime as dt
from accounts.models import User
from chatrooms.models import Invite, Membership, Room

NOW = dt.datetime.fromisoformat({NOW.isoformat()!r})
room = Room.objects.get(slug={slug!r})
Membership.objects.filter(room=room, user__username="priya").update(role="moderator")
for token, by, minutes, max_uses, uses in {INVITES!r}:
    invite = Invite.objects.create(
        room=room, token=token, created_by=User.objects.get(username=by),
        max_uses=max_uses, use_count=uses,
    )
    Invite.objects.filter(pk=invite.pk).update(created_at=NOW - dt.timedelta(minutes=minutes))
""")


def at_now(person) -> None:
    person.page.clock.install(time=NOW)


def write(page, name: str, *, full_page: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)  # no hover effects
    page.screenshot(
        path=SCREENSHOTS / name, animations="disabled", caret="hide", full_page=full_page
    )


def test_lobby_and_room_screenshots(people, team):
    tom = people("tom", account="existing")
    tom.open_room(team["release"])
    maya = people("maya", account="existing")  # signed in: on the lobby
    for person in (tom, maya):
        at_now(person)

    # The lobby: her rooms with unread and online counts (tom is in the
    # release room), public rooms to join, the forms.
    maya.page.reload()
    expect(maya.page.get_by_role("link", name="Release 2.4")).to_be_visible()
    expect(maya.page.get_by_text("1 online")).to_be_visible()
    write(maya.page, "lobby.png")

    # The room, mid-conversation, tom online and typing.
    maya.open_room(team["release"])
    expect(maya.articles).to_have_count(len(RELEASE_CHAT))
    expect(maya.online.get_by_role("listitem")).to_have_count(2)
    expect(maya.online).to_contain_text("Tom Okafor")
    tom.composer.press_sequentially("Friday 10:00 works")
    expect(maya.page.get_by_text(f"Tom Okafor @{tom.username} is typing…")).to_be_visible()
    maya.composer.focus()
    write(maya.page, "room.png")


def test_phone_screenshot(people, team):
    """tom, a member, on his phone: he tapped his last message, which shows its actions."""
    maya = people("maya", account="existing")
    tom = people("tom", account="existing", **PHONE)
    for person in (maya, tom):
        at_now(person)
    maya.open_room(team["release"])
    tom.open_room(team["release"])
    expect(tom.articles).to_have_count(len(RELEASE_CHAT))
    expect(tom.online.get_by_role("listitem")).to_have_count(2)
    expect(tom.composer).to_be_in_viewport()
    mine = tom.log.locator("article.chat-msg--own").last
    mine.locator(".chat-msg-text").tap()
    expect(mine.get_by_role("button", name="Edit message")).to_be_visible()
    write(tom.page, "phone.png")


def test_settings_screenshot(people, site, team):
    """maya, the owner, on the release room's settings: priya moderates."""
    settings_team(site, team["release"])
    maya = people("maya", account="existing")
    at_now(maya)

    def as_deployed(route):
        # The page writes the links with the address it was asked on: the
        # test server's random port. Shown as on a deployed site instead.
        response = route.fetch()
        body = response.text().replace(site.base, SITE_ADDRESS)
        route.fulfill(response=response, body=body)

    maya.page.route(re.compile(r"/settings/$"), as_deployed)
    maya.open_room(team["release"])
    maya.open_settings()
    expect(maya.invite_links).to_have_count(len(INVITES))
    expect(maya.invite_links.first).to_have_value(f"{SITE_ADDRESS}/chats/invite/{INVITES[1][0]}/")
    expect(maya.member_row("priya")).to_contain_text("Moderator")
    expect(maya.page.get_by_role("button", name="Remove moderator: priya")).to_be_visible()
    write(maya.page, "settings.png", full_page=True)  # 1280 wide, the links below the fold
