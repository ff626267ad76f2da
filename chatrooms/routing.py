"""WebSocket URLs (the http side is chatrooms/urls.py)."""

websocket_urlpatterns: list = []
