"""How a write tells the open sockets: always after its transaction commits.

The function that writes is the function that notifies (as in Zulip's
actions): a change reaches every process whether a view, the admin, a
command or the socket made it, and never before it is stored.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from chatrooms import protocol
from chatrooms.hub import hub


def broadcast_on_commit(
    room_id: int, frame: dict[str, Any], *, message_id: int = 0, close: int = 0
) -> None:
    """Send `frame` to the room's sockets, on every process, once the transaction commits.

    `message_id`: the frame is that message's (a socket whose `hello` holds
    it drops it). With `close`, the frame is the last: every socket of the
    room is then closed with that code (archiving). In autocommit (the
    socket's writes) the commit has happened and this sends at once.
    """
    text = protocol.encode(frame)
    transaction.on_commit(
        lambda: hub.publish_sync(room_id, text, message_id=message_id, close=close)
    )


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


def user_cache_invalidate(*, user_id: int, room_id: int = 0) -> None:
    """Every process's connect cache reads the user again, after the transaction commits.

    For changes that close no socket but make a cached handshake wrong: a
    role, a display name, a deleted user (chatrooms/access.py). Sockets
    never see the event (Hub.deliver_user keeps `invalidate` to the caches).
    """
    event = {"invalidate": "user", "room": room_id}
    transaction.on_commit(lambda: hub.publish_user_sync(user_id, event))


def user_sockets_rekey(*, user_id: int, session_key: str, new_session_key: str) -> None:
    """Tell the sockets of a session that it lives on under a new key, on every process."""
    event = {"session": session_key, "rekey": new_session_key}
    transaction.on_commit(lambda: hub.publish_user_sync(user_id, event))
