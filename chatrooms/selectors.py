"""Every read that encodes a rule: who sees which room, history, catch-up.

The HTML views (first render) and the consumer (connect, history frames)
share these, so a rule lives in one place. They return plain data: the
consumer runs them in a worker thread and must not touch lazy relations.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from accounts.models import shown_name
from chatrooms import protocol
from chatrooms.models import Invite, Membership, Message, Room

_MESSAGE_FIELDS = (
    "id",
    "author__username",
    "author__display_name",
    "body",
    "created_at",
    "client_id",
    "edited_at",
)


def _message_frame(row: dict[str, Any]) -> dict[str, Any]:
    username = row["author__username"] or "[deleted user]"
    return protocol.message_frame(
        id=row["id"],
        user=username,
        display_name=shown_name(row["author__display_name"], username),
        message=row["body"],
        ts=row["created_at"],
        client_id=row["client_id"],
        edited_at=row["edited_at"],
    )


def _live_messages(room_id: int) -> QuerySet[Message]:
    return Message.objects.filter(room_id=room_id, deleted_at__isnull=True)


def message_history(*, room_id: int, before: int | None, limit: int) -> tuple[list[dict], bool]:
    """Up to `limit` live messages with id < before (None: the latest), oldest first.

    Returns (frames, has_more).
    """
    qs = _live_messages(room_id)
    if before is not None:
        qs = qs.filter(id__lt=before)
    rows = list(qs.order_by("-id").values(*_MESSAGE_FIELDS)[: limit + 1])
    has_more = len(rows) > limit
    return [_message_frame(row) for row in reversed(rows[:limit])], has_more


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What a reconnecting client missed."""

    messages: list[dict]
    has_more: bool
    truncated: bool


def message_catch_up(*, room_id: int, after: int, limit: int, page: int) -> CatchUp:
    """Every live message after id `after`, then the edits and deletes since it was sent.

    Past `limit` missed messages, the latest page instead, with truncated=True.
    """
    newer = list(
        _live_messages(room_id)
        .filter(id__gt=after)
        .order_by("id")
        .values(*_MESSAGE_FIELDS)[: limit + 1]
    )
    if len(newer) > limit:
        messages, has_more = message_history(room_id=room_id, before=None, limit=page)
        return CatchUp(messages=messages, has_more=has_more, truncated=True)
    frames = [_message_frame(row) for row in newer]
    since = (
        Message.objects.filter(room_id=room_id, id__lte=after)
        .order_by("-id")
        .values_list("created_at", flat=True)
        .first()
    )
    if since is not None:
        changed = (
            Message.objects.filter(room_id=room_id, id__lte=after)
            .filter(Q(edited_at__gt=since) | Q(deleted_at__gt=since))
            .order_by("id")
            .values("id", "body", "edited_at", "deleted_at")[:limit]
        )
        for row in changed:
            if row["deleted_at"] is not None:
                frames.append(protocol.delete_frame(id=row["id"]))
            else:
                frames.append(
                    protocol.edit_frame(
                        id=row["id"], message=row["body"], edited_at=row["edited_at"]
                    )
                )
    has_more = _live_messages(room_id).filter(id__lte=after).exists()
    return CatchUp(messages=frames, has_more=has_more, truncated=False)


def room_for_slug(slug: str) -> Room | None:
    """The live (not archived) room with that slug, or None."""
    return Room.objects.filter(slug=slug, archived_at__isnull=True).first()


def membership_for(*, user_id: int, room_id: int) -> Membership | None:
    """The user's membership in the room, banned or not, or None."""
    return Membership.objects.filter(user_id=user_id, room_id=room_id).first()


def room_list_for_user(*, user_id: int) -> list[dict[str, Any]]:
    """The user's live rooms, each with its unread count (messages by others past last read)."""
    unread = (
        Message.objects.filter(
            room_id=OuterRef("room_id"),
            id__gt=OuterRef("last_read_id"),
            deleted_at__isnull=True,
        )
        .exclude(author_id=user_id)
        .order_by()
        .values("room_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    memberships = (
        Membership.objects.filter(user_id=user_id, is_banned=False, room__archived_at__isnull=True)
        .select_related("room")
        .annotate(unread=Coalesce(Subquery(unread), Value(0)))
        .order_by("room__name")
    )
    return [{"room": m.room, "membership": m, "unread": m.unread} for m in memberships]


def public_rooms_to_join(*, user_id: int) -> QuerySet[Room]:
    """Live public rooms the user is not in (and not banned from)."""
    return (
        Room.objects.filter(is_private=False, archived_at__isnull=True)
        .exclude(memberships__user_id=user_id)
        .order_by("name")
    )


# --- Archived rooms: read-only for their members --------------------------------------


def archived_rooms_for_user(*, user_id: int) -> list[Room]:
    """The archived rooms the user is a (not banned) member of, by name."""
    return list(
        Room.objects.filter(
            archived_at__isnull=False,
            memberships__user_id=user_id,
            memberships__is_banned=False,
        ).order_by("name")
    )


def archived_room_for_member(*, user_id: int, slug: str) -> tuple[Room, Membership] | None:
    """The archived room with that slug and the user's membership; None unless a
    (not banned) member: a public archived room is not open to others either,
    since nobody can join an archived room."""
    room = Room.objects.filter(slug=slug, archived_at__isnull=False).first()
    if room is None:
        return None
    membership = membership_for(user_id=user_id, room_id=room.id)
    if membership is None or membership.is_banned:
        return None
    return room, membership


def room_for_settings(slug: str) -> Room | None:
    """The room with that slug, archived or not (its owner may unarchive it)."""
    return Room.objects.filter(slug=slug).first()


def room_members(*, room_id: int) -> list[Membership]:
    """Everyone in the room, banned included, owner first, then moderators."""
    order = {"owner": 0, "moderator": 1, "member": 2}
    members = list(
        Membership.objects.filter(room_id=room_id).select_related("user").order_by("user__username")
    )
    return sorted(members, key=lambda m: (m.is_banned, order.get(m.role, 3)))


def invites_live(*, room_id: int) -> list:
    """The room's invites that still work, newest first."""
    return list(
        Invite.objects.live()
        .filter(room_id=room_id)
        .select_related("created_by")
        .order_by("-created_at")
    )


# --- The page an invite link opens (reads only: a link preview spends nothing) ---------


@dataclass(frozen=True, slots=True)
class InvitePreview:
    """What an invite link's page shows to one signed-in user."""

    invite: Invite
    room: Room
    # "join", "member" (already in: nothing to spend), or why joining would
    # fail: "banned", "archived", "expired", "revoked", "used_up".
    status: str
    member_count: int


def invite_preview(*, user_id: int, token: str) -> InvitePreview | None:
    """The invite as joining would find it now, without writing; None for an unknown token.

    The checks run in services.invite_redeem's order, so the page never offers
    a Join that the POST would refuse, nor refuses one it would grant.
    """
    invite = Invite.objects.select_related("room", "created_by").filter(token=token).first()
    if invite is None:
        return None
    room = invite.room
    membership = membership_for(user_id=user_id, room_id=room.id)
    if membership is not None and membership.is_banned:
        status = "banned"
    elif room.is_archived:
        status = "archived"
    elif invite.state != "live":
        status = invite.state
    else:
        status = "join" if membership is None else "member"
    member_count = Membership.objects.filter(room=room, is_banned=False).count()
    return InvitePreview(invite=invite, room=room, status=status, member_count=member_count)


# --- Room names and invite links as a signed-out page sees them -----------------------


def room_name_key(name: str) -> str:
    """What makes two room names "the same": NFKC, case-folded, spaces collapsed, trimmed."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


@dataclass(frozen=True, slots=True)
class SameNameRoom:
    """A live room whose name is the same as one being created."""

    room: Room
    # False: a public room the user is banned from; the refusal shows no link.
    can_open: bool


def room_with_same_name(*, user_id: int, name: str) -> SameNameRoom | None:
    """A live room named like `name` that the user can see: public, or theirs (None if none).

    Private rooms of others do not count: refusing their names would tell
    that they exist (README.md, "Rooms").
    """
    key = room_name_key(name)
    if not key:
        return None
    mine = dict(
        Membership.objects.filter(user_id=user_id, room__archived_at__isnull=True).values_list(
            "room_id", "is_banned"
        )
    )
    # Names only, in Python: the database cannot compare NFKC forms, and
    # the lobby lists every public room anyway.
    candidates = Room.objects.filter(archived_at__isnull=True).filter(
        Q(is_private=False) | Q(id__in=list(mine))
    )
    for room_id, candidate in candidates.values_list("id", "name").order_by("id"):
        if room_name_key(candidate) == key:
            room = Room.objects.get(id=room_id)
            banned = mine.get(room_id, False)
            if room.is_private and banned:
                continue  # banned from a private room: it is not theirs to see
            return SameNameRoom(room=room, can_open=not banned)
    return None


def room_for_invite_token(token: str) -> Room | None:
    """The live room a live invite with this token leads to, or None; reads only."""
    invite = (
        Invite.objects.live()
        .filter(token=token, room__archived_at__isnull=True)
        .select_related("room")
        .first()
    )
    return invite.room if invite is not None else None
