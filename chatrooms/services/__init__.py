"""Every write of the chat goes through here, so that HTTP, the socket, the
admin and commands behave alike, one module per entity:

- rooms: entering, creating, naming, archiving, read markers;
- messages: post, edit, delete;
- moderation: who may act on whom; kick, ban, roles, leave;
- invites: create, revoke, redeem;
- events: how a write notifies the open sockets, after its commit.

Services are synchronous (the consumer calls them through
database_sync_to_async), keyword-only, and return plain data or models.
A write that others must see live notifies them itself, after its
transaction commits (`events`), whoever called it. Users' own writes
(activation, password) live in accounts.services.
"""

from chatrooms.services.errors import ServiceError
from chatrooms.services.events import (
    broadcast_on_commit,
    user_cache_invalidate,
    user_sockets_close,
    user_sockets_rekey,
)
from chatrooms.services.invites import (
    INVITE_LIFETIMES,
    InviteError,
    invite_create,
    invite_redeem,
    invite_revoke,
)
from chatrooms.services.messages import (
    message_create,
    message_delete,
    message_delete_by_staff,
    message_edit,
)
from chatrooms.services.moderation import (
    member_ban,
    member_kick,
    member_leave,
    member_set_role,
    member_unban,
    room_transfer_ownership,
)
from chatrooms.services.rooms import (
    RoomAccess,
    RoomNameTaken,
    membership_mark_read,
    room_create,
    room_enter,
    room_get_or_create_by_name,
    room_set_archived,
    room_update,
)

__all__ = [
    "INVITE_LIFETIMES",
    "InviteError",
    "RoomAccess",
    "RoomNameTaken",
    "ServiceError",
    "broadcast_on_commit",
    "invite_create",
    "invite_redeem",
    "invite_revoke",
    "member_ban",
    "member_kick",
    "member_leave",
    "member_set_role",
    "member_unban",
    "membership_mark_read",
    "message_create",
    "message_delete",
    "message_delete_by_staff",
    "message_edit",
    "room_create",
    "room_enter",
    "room_get_or_create_by_name",
    "room_set_archived",
    "room_transfer_ownership",
    "room_update",
    "user_cache_invalidate",
    "user_sockets_close",
    "user_sockets_rekey",
]
