"""The protocol module pins every frame's shape and limit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chatrooms import protocol
from chatrooms.protocol import ProtocolError, parse_client_text


def parse(text: str, max_chars: int = 4000):
    return parse_client_text(text, max_chars=max_chars, history_page=50)


def test_chat_message_and_tutorial_shape():
    assert parse('{"type":"chat.message","message":" hi ","client_id":"a"}') == (
        protocol.ChatMessage(message="hi", client_id="a")
    )
    assert parse('{"message":"hi"}') == protocol.ChatMessage(message="hi", client_id="")


def test_every_client_frame():
    assert parse('{"type":"chat.edit","id":3,"message":"x"}') == protocol.ChatEdit(3, "x")
    assert parse('{"type":"chat.delete","id":3}') == protocol.ChatDelete(3)
    assert parse('{"type":"typing","active":false}') == protocol.Typing(False)
    assert parse('{"type":"history","before":9,"limit":10}') == protocol.History(9, 10)
    assert parse('{"type":"history"}') == protocol.History(None, 50)
    assert parse('{"type":"history","limit":500}') == protocol.History(None, 100)
    assert parse('{"type":"read","id":4}') == protocol.Read(4)
    assert parse('{"type":"ping"}') == protocol.Ping()


@pytest.mark.parametrize(
    "text, code",
    [
        ("{", "bad_json"),
        ("NaN", "bad_json"),
        ('{"a": Infinity}', "bad_json"),
        ("[" * 5000 + "]" * 5000, "bad_json"),
        ("null", "bad_frame"),
        ('{"type":"chat.message","message":"\\ud83d"}', "bad_frame"),
        ('{"type":"chat.message","message":"bell\\u0007"}', "bad_frame"),
        ('{"type":"chat.message","message":"x","client_id":"\\u0000"}', "bad_frame"),
        ('{"type":"read","id":1.5}', "bad_frame"),
        ('{"type":"read","id":9223372036854775808}', "bad_frame"),
        ('{"type":"history","limit":0}', "bad_frame"),
        ('{"type":"typing"}', "bad_frame"),
        ('{"type":"whatever"}', "unknown_type"),
        ('{"type":"chat.message","message":"12345"}', None),
        ('{"type":"chat.message","message":"123456"}', "too_long"),
    ],
)
def test_rejections(text, code):
    if code is None:
        assert parse(text, max_chars=5).message == "12345"
        return
    with pytest.raises(ProtocolError) as exc:
        parse(text, max_chars=5)
    assert exc.value.code == code
    assert exc.value.frame()["type"] == "error"


def test_newlines_and_tabs_are_kept_inside_a_message():
    assert parse('{"message":"line 1\\n\\tline 2"}').message == "line 1\n\tline 2"


def test_server_frames():
    ts = datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC)
    frame = protocol.message_frame(
        id=1, user="a", display_name="A", message="m", ts=ts, client_id="", edited_at=None
    )
    assert frame == {
        "type": "chat.message",
        "id": 1,
        "user": "a",
        "display_name": "A",
        "message": "m",
        "ts": "2026-11-24T10:00:00.123Z",
        "client_id": "",
        "edited_at": None,
    }
    assert protocol.decode_json(protocol.encode(frame)) == frame
    assert protocol.error_frame("empty", "x", 5) == {
        "type": "error",
        "code": "empty",
        "detail": "x",
        "id": 5,
    }
    assert protocol.closed_frame("kicked") == {"type": "closed", "reason": "kicked"}
