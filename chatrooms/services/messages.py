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

    A repeat of (user, room, client_id) stores nothing and broadcasts the
    stored message again (or its deletion), created=False. Again, because
    a repeat means its sender saw no echo: the first attempt may have
    committed while its connection to the database broke, so that its
    broadcast never ran. Delivery is at least once; clients drop an id they
    already have (docs/protocol.md). The INSERT is the only query in the
    common case: a repeat is found by the unique constraint refusing it,
    not by a lookup before every insert.
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
        broadcast_on_commit(room_id, existing)
        return existing, False
    frame = _frame_for(message, user)
    broadcast_on_commit(room_id, frame, message_id=message.id)
    return frame, True


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
        display_name=user.shown_name,
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


@transaction.atomic
def message_delete_by_staff(*, message: Message) -> None:
    """Soft-delete from the admin; open rooms drop it at once."""
    if message.deleted_at is None:
        message.deleted_at = timezone.now()
        message.save(update_fields=["deleted_at"])
        broadcast_on_commit(message.room_id, protocol.delete_frame(id=message.id))
