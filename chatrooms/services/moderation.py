"""Roles and moderation: who may act on whom, and the acts (kick, ban, roles, leave)."""

from __future__ import annotations

from django.db import transaction

from chatrooms import selectors
from chatrooms.models import Membership, Room
from chatrooms.services.errors import ServiceError
from chatrooms.services.events import user_cache_invalidate, user_sockets_close

# --- Room settings, roles and moderation -------------------------------------------------
#
# The rules, enforced here for every caller:
# - owners and moderators rename the room, manage invites, kick, ban, unban
#   and delete any message; moderators act on members only, never on the
#   owner or another moderator;
# - only the owner promotes and demotes moderators, hands ownership on,
#   archives and unarchives;
# - nobody acts on a room they are not part of (a banned member is not part of it);
# - members leave; the owner hands ownership on first.


def actor_membership(*, user, room: Room) -> Membership:
    """The user's membership of the room; ServiceError when they are not part of it."""
    membership = selectors.membership_for(user_id=user.id, room_id=room.id)
    if membership is None or membership.is_banned:
        raise ServiceError("forbidden", "You are not a member of this room.")
    return membership


def moderator_membership(*, user, room: Room) -> Membership:
    """The user's membership, which must be the owner's or a moderator's."""
    actor = actor_membership(user=user, room=room)
    if not actor.can_moderate:
        raise ServiceError("forbidden", "Only the room's owner and moderators can do that.")
    return actor


def owner_membership(*, user, room: Room) -> Membership:
    """The user's membership, which must be the owner's."""
    actor = actor_membership(user=user, room=room)
    if actor.role != Membership.Role.OWNER:
        raise ServiceError("forbidden", "Only the room's owner can do that.")
    return actor


def acting_membership(*, user, room: Room, staff: bool, check) -> Membership | None:
    """Who acts: `check`'s membership of the user, or None for staff in the admin."""
    if staff:
        if not getattr(user, "is_staff", False):
            raise ServiceError("forbidden", "Only staff can do that here.")
        return None
    return check(user=user, room=room)


def target_membership(*, actor: Membership | None, room: Room, user_id: int) -> Membership:
    """The membership `actor` may act on: never one's own, never above one's rank.

    Staff (actor None) act on anyone but the owner: a room always keeps one.
    """
    target = (
        Membership.objects.select_for_update()
        .select_related("user")
        .filter(room=room, user_id=user_id)
        .first()
    )
    if target is None:
        raise ServiceError("not_found", "That person is not in this room.")
    if target.role == Membership.Role.OWNER:
        raise ServiceError("forbidden", "Nobody can act on the room's owner.")
    if actor is None:
        return target
    if target.user_id == actor.user_id:
        raise ServiceError("forbidden", "You cannot do that to yourself.")
    if target.role == Membership.Role.MODERATOR and actor.role != Membership.Role.OWNER:
        raise ServiceError("forbidden", "Only the owner can act on a moderator.")
    return target


@transaction.atomic
def member_kick(*, user, room: Room, user_id: int, staff: bool = False) -> None:
    """End someone's membership; they may come back to a public room or by a new invite."""
    actor = acting_membership(user=user, room=room, staff=staff, check=moderator_membership)
    target = target_membership(actor=actor, room=room, user_id=user_id)
    if target.is_banned:
        raise ServiceError("forbidden", "That person is banned; unban them instead.")
    target.delete()
    user_sockets_close(user_id=user_id, reason="kicked", room_id=room.id)


@transaction.atomic
def member_ban(*, user, room: Room, user_id: int, staff: bool = False) -> None:
    """Ban someone: out now, and no way back in by any path until unbanned."""
    actor = acting_membership(user=user, room=room, staff=staff, check=moderator_membership)
    target = target_membership(actor=actor, room=room, user_id=user_id)
    target.is_banned = True
    target.role = Membership.Role.MEMBER
    target.save(update_fields=["is_banned", "role"])
    user_sockets_close(user_id=user_id, reason="banned", room_id=room.id)


@transaction.atomic
def member_unban(*, user, room: Room, user_id: int, staff: bool = False) -> None:
    """Lift a ban; the person may then join again (public room) or be invited."""
    acting_membership(user=user, room=room, staff=staff, check=moderator_membership)
    deleted, _ = Membership.objects.filter(room=room, user_id=user_id, is_banned=True).delete()
    if not deleted:
        raise ServiceError("not_found", "That person is not banned here.")


@transaction.atomic
def member_set_role(*, user, room: Room, user_id: int, role: str, staff: bool = False) -> None:
    """Promote a member to moderator, or demote a moderator (owner only)."""
    if role not in (Membership.Role.MODERATOR, Membership.Role.MEMBER):
        raise ServiceError("bad_frame", "Unknown role.")
    actor = acting_membership(user=user, room=room, staff=staff, check=owner_membership)
    target = target_membership(actor=actor, room=room, user_id=user_id)
    if target.is_banned:
        raise ServiceError("forbidden", "That person is banned.")
    target.role = role
    target.save(update_fields=["role"])
    user_cache_invalidate(user_id=user_id, room_id=room.id)


@transaction.atomic
def room_transfer_ownership(*, user, room: Room, user_id: int) -> None:
    """Hand the room to another member; the old owner stays as a moderator."""
    actor = owner_membership(user=user, room=room)
    target = target_membership(actor=actor, room=room, user_id=user_id)
    if target.is_banned:
        raise ServiceError("forbidden", "That person is banned.")
    actor.role = Membership.Role.MODERATOR
    actor.save(update_fields=["role"])
    target.role = Membership.Role.OWNER
    target.save(update_fields=["role"])
    user_cache_invalidate(user_id=actor.user_id, room_id=room.id)
    user_cache_invalidate(user_id=user_id, room_id=room.id)


@transaction.atomic
def member_leave(*, user, room: Room) -> None:
    """Leave a room (the owner hands it on first); one's sockets there close."""
    actor = actor_membership(user=user, room=room)
    if actor.role == Membership.Role.OWNER:
        raise ServiceError("forbidden", "Hand the room to another member before you leave.")
    actor.delete()
    user_sockets_close(user_id=user.id, reason="left", room_id=room.id)
