"""Messages: post, edit, delete; each broadcast once stored."""

from __future__ import annotations

import contextlib
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from chatrooms import protocol, selectors
from chatrooms.models import Message
from chatrooms.services.errors import ServiceError
from chatrooms.services.events import broadcast_on_commit


def message_create(
    *, room_id: int, user, body: str, client_id: str = ""
) -> tuple[dict[str, Any], bool]:
    """Store a message and broadcast it once committed; returns (its frame, created).

    For synchronous callers (commands, tests); sockets go through the
    process's group-commit writer (chatrooms/writer.py), which stores and
    publishes under the room's order lock. Here the lock is held until the
    commit, so ids still commit in order; the broadcast follows the commit.
    """
    with transaction.atomic():
        _room_order_lock(room_id)
        frame, created = message_store(
            room_id=room_id,
            author_id=user.id,
            username=user.username,
            display_name=user.shown_name,
            body=body,
            client_id=client_id,
        )
        broadcast_on_commit(room_id, frame, message_id=frame["id"] if created else 0)
    return frame, created


def _room_order_lock(room_id: int) -> None:
    """The room's order lock until the commit (PostgreSQL; chatrooms/writer.py)."""
    from chatrooms.writer import ORDER_LOCKS

    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s::int, %s::int)", [ORDER_LOCKS, room_id])


def message_store(
    *, room_id: int, author_id: int, username: str, display_name: str, body: str, client_id: str
) -> tuple[dict[str, Any], bool]:
    """Store a message (no broadcast); returns (the frame to broadcast, created).

    A repeat of (author, room, client_id) stores nothing and returns the
    stored message (or its deletion), created=False: a repeat means its
    sender saw no echo, so it is broadcast again. Delivery is at least once;
    clients drop an id they already have (docs/protocol.md). The INSERT is
    the only query in the common case: a repeat is found by the unique
    constraint refusing it, not by a lookup before every insert.
    """
    try:
        with _savepoint_if_in_transaction():
            message = Message.objects.create(
                room_id=room_id, author_id=author_id, body=body, client_id=client_id
            )
    except IntegrityError:
        existing = (
            _message_by_client_id(
                room_id=room_id,
                author_id=author_id,
                username=username,
                display_name=display_name,
                client_id=client_id,
            )
            if client_id
            else None
        )
        if existing is None:
            raise
        return existing, False
    return _frame_for(message, username, display_name), True


def _savepoint_if_in_transaction():
    # In autocommit (the consumer's case) a failed INSERT leaves nothing to
    # roll back; inside a caller's transaction it must not poison it.
    if transaction.get_connection().in_atomic_block:
        return transaction.atomic()
    return contextlib.nullcontext()


def _frame_for(message: Message, username: str, display_name: str) -> dict[str, Any]:
    return protocol.message_frame(
        id=message.id,
        user=username,
        display_name=display_name,
        message=message.body,
        ts=message.created_at,
        client_id=message.client_id,
        edited_at=message.edited_at,
    )


def _message_by_client_id(
    *, room_id: int, author_id: int, username: str, display_name: str, client_id: str
) -> dict[str, Any] | None:
    message = Message.objects.filter(
        room_id=room_id, author_id=author_id, client_id=client_id
    ).first()
    if message is None:
        return None
    if message.is_deleted:
        # Retried after it was deleted: the retry must not resurrect it.
        return protocol.delete_frame(id=message.id)
    return _frame_for(message, username, display_name)


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


@transaction.atomic
def message_delete_by_staff(*, message: Message) -> None:
    """Soft-delete from the admin; open rooms drop it at once."""
    if message.deleted_at is None:
        message.deleted_at = timezone.now()
        message.save(update_fields=["deleted_at"])
        broadcast_on_commit(message.room_id, protocol.delete_frame(id=message.id))
