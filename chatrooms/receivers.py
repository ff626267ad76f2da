"""Signal receivers: each hands over to a service, no logic of its own."""

from __future__ import annotations

from chatrooms import services


def close_sockets_on_sign_out(sender, request, user, **kwargs) -> None:
    """Signing out closes the sockets that browser session opened, on every process."""
    if user is None or request is None:
        return
    services.user_sockets_close(
        user_id=user.id, reason="signed_out", session_key=request.session.session_key or ""
    )
