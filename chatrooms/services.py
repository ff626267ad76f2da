"""Every write of the chat goes through here: HTTP, WebSocket, admin and
commands behave alike.

Services are synchronous (the consumer calls them through
database_sync_to_async) and return plain data. A change other people must
see live is broadcast after its transaction commits (`broadcast_on_commit`),
except a new chat message: its only writer is the consumer, which sends the
frame right after the INSERT returns, to keep the message path to that one
query and one channel-layer send.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import slugify

from chatrooms import protocol, selectors
from chatrooms.hub import hub
from chatrooms.models import ROOM_SLUG_MAX, Invite, Membership, Message, Room


class ServiceError(Exception):
    """A write that the rules forbid; `code` is a protocol error code."""

    def __init__(self, code: protocol.ErrorCode, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


# --- Broadcasting ---------------------------------------------------------------


def broadcast_on_commit(room_id: int, frame: dict[str, Any]) -> None:
    """Send `frame` to the room's sockets, on every process, once the transaction commits."""
    text = protocol.encode(frame)
    transaction.on_commit(lambda: hub.publish_sync(room_id, text))


def user_sockets_close(
    *,
    user_id: int,
    reason: protocol.CloseReason,
    session_key: str = "",
    room_id: int = 0,
    except_session: str = "",
) -> None:
    """Close the user's open sockets on every process, after the transaction commits.

    With `session_key`, only the sockets opened with that session (sign-out
    ends one browser's session, not the user's other devices); with
    `room_id`, only the sockets in that room (kick, ban, leave); with
    `except_session`, all but that session's, which stay open and wait to be
    re-keyed or closed by session (a password change: chatrooms/sessions.py).
    """
    event = {"reason": reason, "session": session_key, "room": room_id}
    if except_session:
        event["except_session"] = except_session
    transaction.on_commit(lambda: hub.publish_user_sync(user_id, event))


def user_sockets_rekey(*, user_id: int, session_key: str, new_session_key: str) -> None:
    """Tell the sockets of a session that it lives on under a new key, on every process."""
    event = {"session": session_key, "rekey": new_session_key}
    transaction.on_commit(lambda: hub.publish_user_sync(user_id, event))


# --- Rooms and memberships ------------------------------------------------------------


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


@transaction.atomic
def room_create(*, user, name: str, topic: str = "", is_private: bool = False) -> Room:
    """A new room, with `user` as its owner."""
    room = Room.objects.create(
        slug=_unique_slug(name), name=name, topic=topic, is_private=is_private, created_by=user
    )
    Membership.objects.create(room=room, user=user, role=Membership.Role.OWNER)
    return room


def room_get_or_create_by_name(*, user, name: str) -> Room | None:
    """The tutorial's "enter any room name": the room with that name's slug.

    A new name creates a public room owned by `user`. An existing room is
    returned when the user may enter it (the room page then joins them), and
    None when it is private to others, archived, or bans them.
    """
    slug = room_slug_for(name)
    if not slug:
        return None
    room = Room.objects.filter(slug=slug).first()
    if room is None:
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
    return updated == 1


# --- Messages -------------------------------------------------------------------------


def message_create(
    *, room_id: int, user, body: str, client_id: str = ""
) -> tuple[dict[str, Any], bool]:
    """Store a message; returns (its frame, created).

    A repeat of (user, room, client_id) stores nothing and returns the
    stored message with created=False. Callers broadcast a created one.
    The INSERT is the only query in the common case: a repeat is found by
    the unique constraint refusing it, not by a lookup before every insert.
    """
    try:
        with _savepoint_if_in_transaction():
            message = Message.objects.create(
                room_id=room_id, author=user, body=body, client_id=client_id
            )
    except IntegrityError:
        existing = (
            _message_by_client_id(room_id=room_id, user=user, client_id=client_id)
            if client_id
            else None
        )
        if existing is None:
            raise
        return existing, False
    return _frame_for(message, user), True


def _savepoint_if_in_transaction():
    # In autocommit (the consumer's case) a failed INSERT leaves nothing to
    # roll back; inside a caller's transaction it must not poison it.
    if transaction.get_connection().in_atomic_block:
        return transaction.atomic()
    return contextlib.nullcontext()


def _frame_for(message: Message, user) -> dict[str, Any]:
    return protocol.message_frame(
        id=message.id,
        user=user.username,
        display_name=user.display_name or user.username,
        message=message.body,
        ts=message.created_at,
        client_id=message.client_id,
        edited_at=message.edited_at,
    )


def _message_by_client_id(*, room_id: int, user, client_id: str) -> dict[str, Any] | None:
    message = Message.objects.filter(room_id=room_id, author=user, client_id=client_id).first()
    if message is None:
        return None
    if message.is_deleted:
        # Retried after it was deleted: the retry must not resurrect it.
        return protocol.delete_frame(id=message.id)
    return _frame_for(message, user)


def _message_for_change(*, room_id: int, message_id: int, user) -> Message:
    message = (
        Message.objects.select_for_update()
        .filter(id=message_id, room_id=room_id, deleted_at__isnull=True)
        .first()
    )
    if message is None:
        raise ServiceError("not_found", "No such message in this room.")
    return message


@transaction.atomic
def message_edit(*, room_id: int, message_id: int, user, body: str) -> dict[str, Any]:
    """Change the text of one's own message; broadcast the edit."""
    message = _message_for_change(room_id=room_id, message_id=message_id, user=user)
    if message.author_id != user.id:
        raise ServiceError("forbidden", "You can only edit your own messages.")
    message.body = body
    message.edited_at = timezone.now()
    message.save(update_fields=["body", "edited_at"])
    frame = protocol.edit_frame(id=message.id, message=body, edited_at=message.edited_at)
    broadcast_on_commit(room_id, frame)
    return frame


@transaction.atomic
def message_delete(*, room_id: int, message_id: int, user) -> dict[str, Any]:
    """Soft-delete a message: the author's own, or any as the room's owner or moderator."""
    message = _message_for_change(room_id=room_id, message_id=message_id, user=user)
    if message.author_id != user.id:
        membership = selectors.membership_for(user_id=user.id, room_id=room_id)
        if membership is None or not membership.can_moderate:
            raise ServiceError("forbidden", "You can only delete your own messages.")
    message.deleted_at = timezone.now()
    message.save(update_fields=["deleted_at"])
    frame = protocol.delete_frame(id=message.id)
    broadcast_on_commit(room_id, frame)
    return frame


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


def _actor(*, user, room: Room) -> Membership:
    membership = selectors.membership_for(user_id=user.id, room_id=room.id)
    if membership is None or membership.is_banned:
        raise ServiceError("forbidden", "You are not a member of this room.")
    return membership


def _moderator(*, user, room: Room) -> Membership:
    actor = _actor(user=user, room=room)
    if not actor.can_moderate:
        raise ServiceError("forbidden", "Only the room's owner and moderators can do that.")
    return actor


def _owner(*, user, room: Room) -> Membership:
    actor = _actor(user=user, room=room)
    if actor.role != Membership.Role.OWNER:
        raise ServiceError("forbidden", "Only the room's owner can do that.")
    return actor


def _target(*, actor: Membership, room: Room, user_id: int) -> Membership:
    """The membership `actor` may act on: never one's own, never above one's rank."""
    target = (
        Membership.objects.select_for_update()
        .select_related("user")
        .filter(room=room, user_id=user_id)
        .first()
    )
    if target is None:
        raise ServiceError("not_found", "That person is not in this room.")
    if target.user_id == actor.user_id:
        raise ServiceError("forbidden", "You cannot do that to yourself.")
    if target.role == Membership.Role.OWNER:
        raise ServiceError("forbidden", "Nobody can act on the room's owner.")
    if target.role == Membership.Role.MODERATOR and actor.role != Membership.Role.OWNER:
        raise ServiceError("forbidden", "Only the owner can act on a moderator.")
    return target


@transaction.atomic
def room_update(*, user, room: Room, name: str, topic: str) -> Room:
    """Rename the room or change its topic (owner, moderators)."""
    _moderator(user=user, room=room)
    room.name, room.topic = name, topic
    room.save(update_fields=["name", "topic"])
    return room


@transaction.atomic
def member_kick(*, user, room: Room, user_id: int) -> None:
    """End someone's membership; they may come back to a public room or by a new invite."""
    target = _target(actor=_moderator(user=user, room=room), room=room, user_id=user_id)
    if target.is_banned:
        raise ServiceError("forbidden", "That person is banned; unban them instead.")
    target.delete()
    user_sockets_close(user_id=user_id, reason="kicked", room_id=room.id)


@transaction.atomic
def member_ban(*, user, room: Room, user_id: int) -> None:
    """Ban someone: out now, and no way back in by any path until unbanned."""
    target = _target(actor=_moderator(user=user, room=room), room=room, user_id=user_id)
    target.is_banned = True
    target.role = Membership.Role.MEMBER
    target.save(update_fields=["is_banned", "role"])
    user_sockets_close(user_id=user_id, reason="banned", room_id=room.id)


@transaction.atomic
def member_unban(*, user, room: Room, user_id: int) -> None:
    """Lift a ban; the person may then join again (public room) or be invited."""
    _moderator(user=user, room=room)
    deleted, _ = Membership.objects.filter(room=room, user_id=user_id, is_banned=True).delete()
    if not deleted:
        raise ServiceError("not_found", "That person is not banned here.")


@transaction.atomic
def member_set_role(*, user, room: Room, user_id: int, role: str) -> None:
    """Promote a member to moderator, or demote a moderator (owner only)."""
    if role not in (Membership.Role.MODERATOR, Membership.Role.MEMBER):
        raise ServiceError("bad_frame", "Unknown role.")
    target = _target(actor=_owner(user=user, room=room), room=room, user_id=user_id)
    if target.is_banned:
        raise ServiceError("forbidden", "That person is banned.")
    target.role = role
    target.save(update_fields=["role"])


@transaction.atomic
def room_transfer_ownership(*, user, room: Room, user_id: int) -> None:
    """Hand the room to another member; the old owner stays as a moderator."""
    actor = _owner(user=user, room=room)
    target = _target(actor=actor, room=room, user_id=user_id)
    if target.is_banned:
        raise ServiceError("forbidden", "That person is banned.")
    actor.role = Membership.Role.MODERATOR
    actor.save(update_fields=["role"])
    target.role = Membership.Role.OWNER
    target.save(update_fields=["role"])


@transaction.atomic
def member_leave(*, user, room: Room) -> None:
    """Leave a room (the owner hands it on first); one's sockets there close."""
    actor = _actor(user=user, room=room)
    if actor.role == Membership.Role.OWNER:
        raise ServiceError("forbidden", "Hand the room to another member before you leave.")
    actor.delete()
    user_sockets_close(user_id=user.id, reason="left", room_id=room.id)


@transaction.atomic
def room_set_archived(*, user, room: Room, archived: bool) -> None:
    """Archive (read-only, out of the lobby, sockets closed) or unarchive (owner only)."""
    _owner(user=user, room=room)
    room.archived_at = timezone.now() if archived else None
    room.save(update_fields=["archived_at"])
    if archived:
        text = protocol.encode(protocol.closed_frame("archived"))
        transaction.on_commit(lambda: hub.publish_sync(room.id, text, close=protocol.CLOSE_POLICY))


# --- Invites ------------------------------------------------------------------------------

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
    """A new invite link to the room (owner, moderators); the token has 256 random bits."""
    _moderator(user=user, room=room)
    if room.is_archived:
        raise ServiceError("forbidden", "The room is archived.")
    if lifetime not in INVITE_LIFETIMES:
        raise ServiceError("bad_frame", "Unknown lifetime.")
    if max_uses is not None and max_uses < 1:
        raise ServiceError("bad_frame", "Max uses must be at least 1.")
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
        _moderator(user=user, room=invite.room)
    Invite.objects.filter(id=invite.id, revoked_at__isnull=True).update(revoked_at=timezone.now())


def invite_state(invite: Invite) -> str:
    """'live', 'revoked', 'expired' or 'used_up'."""
    if invite.revoked_at is not None:
        return "revoked"
    if invite.expires_at is not None and invite.expires_at <= timezone.now():
        return "expired"
    if invite.max_uses is not None and invite.use_count >= invite.max_uses:
        return "used_up"
    return "live"


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
    state = invite_state(invite)
    if membership is not None and state == "live":
        return room
    if state != "live":
        raise InviteError(state)
    now = timezone.now()
    counted = (
        Invite.objects.filter(id=invite.id, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .filter(Q(max_uses__isnull=True) | Q(use_count__lt=F("max_uses")))
        .update(use_count=F("use_count") + 1)
    )
    if counted != 1:
        raise InviteError("used_up")
    Membership.objects.create(room=room, user=user)
    return room


# --- Staff --------------------------------------------------------------------------------


@transaction.atomic
def user_set_active(*, user, active: bool) -> None:
    """Deactivate (no sign-in, every session refused, open sockets closed) or reactivate."""
    type(user).objects.filter(id=user.id).update(is_active=active)
    user.is_active = active
    if not active:
        _user_sessions_end(user_id=user.id)
        user_sockets_close(user_id=user.id, reason="deactivated")


def user_password_changing(*, user) -> bool:
    """Whether saving `user` now stores another password hash than the database holds."""
    password = user.__dict__.get("password")  # a deferred password is not being saved
    if user.pk is None or password is None:
        return False
    stored = type(user).objects.filter(pk=user.pk).values_list("password", flat=True).first()
    return stored is not None and stored != password


def user_password_changed(*, user_id: int, keep_session: str = "") -> None:
    """Close the sockets a new password ends: all of the user's but `keep_session`'s."""
    # Django refuses every session whose auth hash predates the new password;
    # `keep_session` made the change, and chatrooms/sessions.py settles its
    # sockets once it is known whether it stayed signed in.
    user_sockets_close(user_id=user_id, reason="password_changed", except_session=keep_session)


def _user_sessions_end(*, user_id: int) -> None:
    """Delete the user's sessions, so that reactivating signs no old browser back in.

    Sessions are not indexed by user: this reads every live session once,
    which is fine for a staff action.
    """
    from django.contrib.auth import SESSION_KEY
    from django.contrib.sessions.models import Session

    mine = [
        session.pk
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if session.get_decoded().get(SESSION_KEY) == str(user_id)
    ]
    Session.objects.filter(pk__in=mine).delete()


@transaction.atomic
def message_delete_by_staff(*, message: Message) -> None:
    """Soft-delete from the admin; open rooms drop it at once."""
    if message.deleted_at is None:
        message.deleted_at = timezone.now()
        message.save(update_fields=["deleted_at"])
        broadcast_on_commit(message.room_id, protocol.delete_frame(id=message.id))
