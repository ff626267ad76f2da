"""Rooms and memberships: entering, creating, naming, archiving, reading."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from chatrooms import protocol, ratelimit, selectors
from chatrooms.models import ROOM_SLUG_MAX, Membership, Room, role_can_moderate
from chatrooms.services.errors import ServiceError
from chatrooms.services.events import broadcast_on_commit
from chatrooms.services.moderation import (
    acting_membership,
    moderator_membership,
    owner_membership,
)


@dataclass(frozen=True, slots=True)
class RoomAccess:
    """What a socket needs to know about its room and its user's place in it."""

    room_id: int
    slug: str
    name: str
    topic: str
    is_private: bool
    membership_id: int
    role: str
    last_read_id: int

    @property
    def can_moderate(self) -> bool:
        """Owner or moderator (a banned member never gets a RoomAccess)."""
        return role_can_moderate(self.role)


def room_enter(*, user, slug: str) -> RoomAccess | None:
    """Let `user` into the room, joining a public one; None when not allowed.

    Not allowed: no such room, an archived room, a private room without
    membership, a ban.
    """
    room = selectors.room_for_slug(slug)
    if room is None:
        return None
    membership = selectors.membership_for(user_id=user.id, room_id=room.id)
    if membership is None:
        if room.is_private:
            return None
        membership, _ = Membership.objects.get_or_create(room=room, user=user)
    if membership.is_banned:
        return None
    return RoomAccess(
        room_id=room.id,
        slug=room.slug,
        name=room.name,
        topic=room.topic,
        is_private=room.is_private,
        membership_id=membership.id,
        role=membership.role,
        last_read_id=membership.last_read_id,
    )


# Paths under /chats/ that a room's slug must not shadow.
RESERVED_SLUGS = frozenset({"new", "enter", "invite"})


def room_slug_for(name: str) -> str:
    """The slug a room name maps to ("" when it has no letter or digit)."""
    slug = slugify(name)[: ROOM_SLUG_MAX - 8].strip("-")
    return f"{slug}-room" if slug in RESERVED_SLUGS else slug


def _unique_slug(name: str) -> str:
    base = room_slug_for(name) or "room"
    slug, n = base, 1
    while Room.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def creation_rate_check(*, user, action: ratelimit.Action) -> None:
    """Count one creation by `user`; raise rate_limited when over CHAT_*_CREATE_RATE.

    Every user alike, staff included: the admin creates no rooms or invites,
    and on the chat pages staff have no special powers.
    """
    if not ratelimit.action_allowed(action=action, user_id=user.id):
        what = "rooms" if action == "room_create" else "invite links"
        per = ratelimit.describe_rate(ratelimit.action_rate(action))
        raise ServiceError(
            "rate_limited", f"You are creating {what} too fast (at most {per}). Try again later."
        )


class RoomNameTaken(ServiceError):
    """room_create refused: a room the user can see already has that name."""

    def __init__(self, same: selectors.SameNameRoom):
        super().__init__(
            "forbidden", f"A room named {same.room.name} already exists: choose another name."
        )
        self.room = same.room
        self.can_open = same.can_open


@transaction.atomic
def room_create(*, user, name: str, topic: str = "", is_private: bool = False) -> Room:
    """A new room owned by `user`, unless one they can see has the same name; rate-limited.

    Names of private rooms the user is not in do not count (they must not
    leak); the name check comes first, so a refusal spends no creation.
    """
    same = selectors.room_with_same_name(user_id=user.id, name=name)
    if same is not None:
        raise RoomNameTaken(same)
    creation_rate_check(user=user, action="room_create")
    room = Room.objects.create(
        slug=_unique_slug(name), name=name, topic=topic, is_private=is_private, created_by=user
    )
    Membership.objects.create(room=room, user=user, role=Membership.Role.OWNER)
    return room


def room_get_or_create_by_name(*, user, name: str) -> Room | None:
    """The tutorial's "enter any room name": the room with that name's slug.

    A new name creates a public room owned by `user` (counted against
    CHAT_ROOM_CREATE_RATE; entering an existing room is not). An existing
    room is returned when the user may enter it (the room page then joins
    them), and None when it is private to others, archived, or bans them.
    """
    slug = room_slug_for(name)
    if not slug:
        return None
    room = Room.objects.filter(slug=slug).first()
    if room is None:
        # The same name under another address ("Straße" is at strae, "STRASSE"
        # would be at strasse): open that room rather than make a second.
        same = selectors.room_with_same_name(user_id=user.id, name=name)
        if same is not None:
            room = same.room
    if room is None:
        creation_rate_check(user=user, action="room_create")
        try:
            with transaction.atomic():
                room = Room.objects.create(slug=slug, name=name, created_by=user)
                Membership.objects.create(room=room, user=user, role=Membership.Role.OWNER)
            return room
        except IntegrityError:  # someone created it a moment ago
            room = Room.objects.get(slug=slug)
    if room_enter(user=user, slug=room.slug) is None:
        return None
    return room


def membership_mark_read(*, membership_id: int, room_id: int, message_id: int) -> bool:
    """Move the read marker forward to `message_id`, a message of this room; never back."""
    updated = (
        Membership.objects.filter(id=membership_id, last_read_id__lt=message_id)
        .filter(room__messages__id=message_id, room_id=room_id)
        .update(last_read_id=message_id)
    )
    if updated:  # this process's next hello says so (chatrooms/access.py)
        from chatrooms.access import connect_cache

        connect_cache.note_read(membership_id, message_id)
    return updated == 1


@transaction.atomic
def room_update(*, user, room: Room, name: str, topic: str, staff: bool = False) -> Room:
    """Rename the room or change its topic (owner, moderators; `staff` in the admin).

    Open pages hear of it at once (a `room` frame).
    """
    acting_membership(user=user, room=room, staff=staff, check=moderator_membership)
    room.name, room.topic = name, topic
    room.full_clean(validate_unique=False, validate_constraints=False)
    room.save(update_fields=["name", "topic"])
    broadcast_on_commit(
        room.id,
        protocol.room_frame(
            slug=room.slug, name=room.name, topic=room.topic, is_private=room.is_private
        ),
    )
    return room


@transaction.atomic
def room_set_archived(*, user, room: Room, archived: bool, staff: bool = False) -> None:
    """Archive (read-only, out of the lobby, sockets closed) or unarchive (owner; staff)."""
    acting_membership(user=user, room=room, staff=staff, check=owner_membership)
    room.archived_at = timezone.now() if archived else None
    room.save(update_fields=["archived_at"])
    if archived:
        broadcast_on_commit(room.id, protocol.closed_frame("archived"), close=protocol.CLOSE_POLICY)
