"""Invite links: create, revoke, redeem."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from chatrooms.models import Invite, Membership, Room
from chatrooms.services.errors import ServiceError
from chatrooms.services.moderation import moderator_membership
from chatrooms.services.rooms import creation_rate_check

INVITE_LIFETIMES = {
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
    "never": None,
}


class InviteError(Exception):
    """An invite that grants nothing: `reason` is expired, revoked, used_up, archived or banned."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@transaction.atomic
def invite_create(*, user, room: Room, lifetime: str = "7d", max_uses: int | None = None):
    """A new invite link to the room (owner, moderators); the token has 256 random bits.

    At most CHAT_INVITE_CREATE_RATE per user, counted once the request is
    otherwise valid.
    """
    moderator_membership(user=user, room=room)
    if room.is_archived:
        raise ServiceError("forbidden", "The room is archived.")
    if lifetime not in INVITE_LIFETIMES:
        raise ServiceError("bad_frame", "Unknown lifetime.")
    if max_uses is not None and max_uses < 1:
        raise ServiceError("bad_frame", "Max uses must be at least 1.")
    creation_rate_check(user=user, action="invite_create")
    delta = INVITE_LIFETIMES[lifetime]
    return Invite.objects.create(
        room=room,
        token=secrets.token_urlsafe(32),
        created_by=user,
        expires_at=timezone.now() + delta if delta else None,
        max_uses=max_uses,
    )


@transaction.atomic
def invite_revoke(*, user, invite: Invite) -> None:
    """Revoke an invite (the room's owner or moderators; staff use the admin)."""
    if not getattr(user, "is_staff", False):
        moderator_membership(user=user, room=invite.room)
    Invite.objects.filter(id=invite.id, revoked_at__isnull=True).update(revoked_at=timezone.now())


@transaction.atomic
def invite_redeem(*, user, token: str) -> Room:
    """Make `user` a member of the invite's room; raises Invite.DoesNotExist or InviteError.

    A member already in the room uses nothing. The use is counted with one
    conditional UPDATE, so two people racing for the last use cannot both win.
    """
    invite = Invite.objects.select_related("room").get(token=token)
    room = invite.room
    membership = Membership.objects.select_for_update().filter(room=room, user=user).first()
    if membership is not None and membership.is_banned:
        raise InviteError("banned")
    if room.is_archived:
        raise InviteError("archived")
    state = invite.state
    if membership is not None and state == "live":
        return room
    if state != "live":
        raise InviteError(state)
    now = timezone.now()
    counted = Invite.objects.live(now).filter(id=invite.id).update(use_count=F("use_count") + 1)
    if counted != 1:
        raise InviteError("used_up")
    Membership.objects.create(room=room, user=user)
    return room
