"""Bad input at scale: hypothesis over every client frame type and every form.

Sockets: each hypothesis example opens one socket as a plain member (bob) in
a fresh room of alice's (one message of hers in it) and sends it a list of
generated frames, valid and invalid variants of every client frame of
docs/protocol.md, non-JSON text, binary and empty frames, and last, now and
then, a frame of exactly the size limit or one byte over. After every frame
a ping must get its pong (the socket stays usable). Each frame must get
exactly what the oracle below says, written from docs/protocol.md and not
from chatrooms/protocol.py: its `error` with the right code, or its effect
(the echo with its id, the edit or delete broadcast, the history page, the
pong; nothing for read and typing). After each socket the room's rows are
exactly the model's and valid, the read marker is where the model says, and
nothing was logged at WARNING or above.

Forms: every form of the site posted through the test client, signed in,
with hypothesis text (control and format characters, RTL overrides,
whitespace only, very long, HTML): never a 5xx, and every stored row valid.

Sizes: at least FUZZ_FRAMES frames (default 2,000, well under a minute) in the normal
run, derandomized so that CI always runs the same ones; `make fuzz` sends at
least 10,000 random ones (FUZZ_FRAMES=10000 FUZZ_RANDOM=1) and keeps the
failing examples in the system's temp directory, so that a rerun replays
them. Hypothesis never writes in the work tree (its home is under /tmp).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import tempfile
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

from chatrooms import selectors
from chatrooms.models import Invite, Membership, Message, Room
from chatrooms.ratelimit import FrameBudget
from tests.chatrooms.conftest import open_socket, session_cookie

# Hypothesis keeps caches (unicode tables, examples) in its home: not the repo.
HYPOTHESIS_HOME = Path(tempfile.gettempdir()) / "chat-hypothesis"
set_hypothesis_home_dir(HYPOTHESIS_HOME)

FUZZ_FRAMES = int(os.environ.get("FUZZ_FRAMES", "2000"))
FUZZ_RANDOM = os.environ.get("FUZZ_RANDOM", "") == "1"
FRAMES_PER_SOCKET = (20, 60)
REPLY_TIMEOUT = 5.0

MAX_FRAME_BYTES = 64 * 1024  # docs/protocol.md: "A text frame over 64 KiB closes the socket"
MAX_CHARS = 4000  # CHAT_MAX_MESSAGE_CHARS's default
MAX_ID = 2**63 - 1
MISSING_ID = 2**40  # no row of a test database has an id this high

pytestmark = [pytest.mark.django_db(transaction=True)]


def _profile(examples: int) -> hsettings:
    return hsettings(
        max_examples=max(1, examples),
        deadline=None,
        derandomize=not FUZZ_RANDOM,
        database=DirectoryBasedExampleDatabase(HYPOTHESIS_HOME / "examples")
        if FUZZ_RANDOM
        else None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,  # the fixtures hold across examples on purpose
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
        print_blob=True,
    )


# --- The oracle: docs/protocol.md, restated ------------------------------------------------

KINDS = ("chat.message", "chat.edit", "chat.delete", "typing", "history", "read", "ping")
# Text the server refuses to store: C0 controls but tab, LF and CR (NUL among
# them), and unpaired surrogates (a JSON "\ud800" escape decodes to one).
UNSTORABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


def _text_errors(value: Any) -> set[str]:
    if not isinstance(value, str):
        return {"bad_frame"}
    if UNSTORABLE.search(value):
        return {"bad_frame"}
    body = value.strip()
    if not body:
        return {"empty"}
    if len(body) > MAX_CHARS:
        return {"too_long"}
    return set()


def _valid_id(value: Any) -> bool:
    return type(value) is int and 1 <= value <= MAX_ID


@dataclass
class Outcome:
    """What one frame must get: one of `codes`, else `effect` (a tuple)."""

    codes: set[str] = field(default_factory=set)
    effect: tuple = ()
    kind: str = ""
    error_id: int | None = None  # the id an error frame must name
    client_id: str = ""


def classify(data: Any) -> Outcome:
    """The state-free half of the oracle: parse errors, or the effect asked for."""
    if not isinstance(data, dict):
        return Outcome({"bad_frame"})
    kind = data.get("type")
    if kind is None and "message" in data:
        kind = "chat.message"  # the Channels tutorial's frame
    if not isinstance(kind, str):
        return Outcome({"bad_frame"})
    if kind not in KINDS:
        return Outcome({"unknown_type"})
    out = Outcome(kind=kind)
    if kind == "chat.message":
        client_id = data.get("client_id")
        if client_id is not None and (
            not isinstance(client_id, str) or len(client_id) > 64 or UNSTORABLE.search(client_id)
        ):
            out.codes.add("bad_frame")
        out.codes |= _text_errors(data.get("message"))
        if isinstance(client_id, str):
            out.client_id = client_id
        if not out.codes:
            out.effect = ("message", data["message"].strip(), client_id or "")
    elif kind == "chat.edit":
        if not _valid_id(data.get("id")):
            out.codes.add("bad_frame")
        else:
            out.error_id = data["id"]
        out.codes |= _text_errors(data.get("message"))
        if not out.codes:
            out.effect = ("edit", data["id"], data["message"].strip())
    elif kind in ("chat.delete", "read"):
        if not _valid_id(data.get("id")):
            out.codes.add("bad_frame")
        else:
            out.error_id = data["id"] if kind == "chat.delete" else None
            out.effect = ("delete" if kind == "chat.delete" else "read", data["id"])
    elif kind == "typing":
        if type(data.get("active")) is not bool:
            out.codes.add("bad_frame")
        else:
            out.effect = ("typing",)
    elif kind == "history":
        before, limit = data.get("before"), data.get("limit", 50)
        if before is not None and not _valid_id(before):
            out.codes.add("bad_frame")
        if type(limit) is not int or limit < 1:
            out.codes.add("bad_frame")
        if not out.codes:
            out.effect = ("history", before, min(limit, 100))
    else:
        out.effect = ("ping",)
    if out.codes:
        out.effect = ()
    return out


def decode(text: str) -> tuple[bool, Any]:
    """(True, value) for JSON text, as Python's own parser reads it; (False, None) if not."""

    def reject(name):
        raise ValueError(name)

    try:
        return True, json.loads(text, parse_constant=reject)
    except (ValueError, RecursionError):
        return False, None


# --- Frames, as hypothesis makes them -------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """An id chosen at send time: one of bob's messages, alice's, another room's, none."""

    kind: str
    index: int = 0


@dataclass(frozen=True)
class RawToken:
    """JSON text put in verbatim where a value goes (1e400, a 5,000-digit number, [[[...]]])."""

    text: str


@dataclass(frozen=True)
class Spec:
    """One frame: a JSON value (with Refs and RawTokens), raw text or bytes."""

    value: Any = None
    raw: str | None = None
    binary: bytes | None = None
    ascii: bool = True
    compact: bool = True
    size: int = 0  # pad the frame to exactly this many UTF-8 bytes
    filler: str = "x"


MISSING = object()
PAYLOADS = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "\u202eevil\u202c",  # right-to-left override
    "\u200b",  # zero-width space alone: not whitespace, a message
    "\ufeff",
    "\u2028\u2029",
    "\u00a0\u3000",
    "😀" * 3,
    "e\u0301" * 5,
    "{{ 7*7 }}",
    "'; DROP TABLE chatrooms_message; --",
    "null",
    "\\u0000",
    "\x7f\x85\x9f",
]
WHITESPACE = " \t\n\r\u00a0\u2028\u2029\u3000\u0085\u1680\u200a\u202f"
ODD_CHARS = [
    "\x00",
    "\x01",
    "\x1f",
    "\x0b",
    "\ud800",
    "\udfff",
    "\ud83d",
    "\ude00",
    "\x7f",
    "\u202e",
]

any_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
not_a_string = any_json.filter(lambda v: not isinstance(v, str))


def _inserted(text: str, char: str, at: int) -> str:
    at = at % (len(text) + 1)
    return text[:at] + char + text[at:]


def _long(unit: str, n: int, pad: str) -> str:
    return pad + (unit * n)[:n] + pad


text_value = st.one_of(
    st.text(max_size=30),
    st.text(st.characters(max_codepoint=0x7F), max_size=12),  # ASCII, C0 controls included
    st.text(WHITESPACE, max_size=6),  # only whitespace, or nothing
    st.sampled_from(PAYLOADS),
    st.builds(_inserted, st.text(max_size=12), st.sampled_from(ODD_CHARS), st.integers(0, 12)),
    st.builds(
        _long,
        st.sampled_from(["x", "é", "😀", "a b", "\u202e"]),
        st.sampled_from([1, 3999, 4000, 4001, 4500]),
        st.sampled_from(["", "  ", "\n\t"]),
    ),
)
client_id_value = st.one_of(
    st.sampled_from(["k1", "k2", "k3", "", " "]),  # few: retries of one client_id
    st.text(max_size=10),
    st.sampled_from(["c" * 64, "c" * 65, "é" * 64, "\x00", "a\ud800"]),
    not_a_string,
)
good_id = st.builds(
    Ref, st.sampled_from(["own", "own", "own", "seed", "foreign", "missing"]), st.integers(0, 99)
)
bad_id = st.one_of(
    st.sampled_from([0, -1, -(2**63), 2**63, 2**64, 10**30, 1.5, 17.0, "7", "", True, False]),
    st.integers(max_value=0),
    st.integers(min_value=2**63, max_value=2**80),
    st.builds(RawToken, st.sampled_from(["1e400", "-0", "1.0", "1E2", "9" * 5000, "-1e-400"])),
    not_a_string,
)
type_value = st.one_of(
    st.sampled_from(KINDS),
    st.sampled_from(KINDS),
    st.sampled_from(["Chat.Message", "chat.message ", "", "PING", "hello", "error", "pong"]),
    st.text(max_size=12),
    not_a_string,
    st.just(MISSING),
)


def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """one_of with weights: (3, good), (1, bad) draws good three times in four."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(pool) - 1).flatmap(lambda i: pool[i])


def _maybe(strategy, bad):
    # Mostly the good value, sometimes a wrong one, sometimes none at all.
    return weighted((3, strategy), (1, bad), (1, st.just(MISSING)))


@st.composite
def object_frame(draw) -> dict:
    kind = draw(type_value)
    fields_of = kind if kind in KINDS else draw(st.sampled_from(KINDS))
    frame: dict[str, Any] = {}
    if kind is not MISSING:
        frame["type"] = kind
    message = _maybe(text_value, not_a_string)
    spec: dict[str, Any] = {
        "chat.message": {"message": message, "client_id": _maybe(client_id_value, st.none())},
        "chat.edit": {"id": _maybe(good_id, bad_id), "message": message},
        "chat.delete": {"id": _maybe(good_id, bad_id)},
        "read": {"id": _maybe(good_id, bad_id)},
        "typing": {"active": _maybe(st.booleans(), any_json)},
        "history": {
            "before": _maybe(good_id | st.none(), bad_id),
            "limit": _maybe(st.integers(1, 120) | st.sampled_from([10**30, MAX_ID]), bad_id),
        },
        "ping": {},
    }[fields_of]
    for name, strategy in spec.items():
        value = draw(strategy)
        if value is not MISSING:
            frame[name] = value
    extras = draw(
        st.dictionaries(
            st.sampled_from(["user", "id", "room", "ts", "display_name", "__proto__"])
            | st.text(max_size=6),
            any_json | st.builds(RawToken, st.sampled_from(["[" * 300 + "]" * 300, "1e400"])),
            max_size=2,
        )
    )
    for name, value in extras.items():
        frame.setdefault(name, value)
    return frame


valid_frame_text = st.sampled_from(
    [
        '{"type":"ping"}',
        '{"type":"chat.message","message":"hi","client_id":"k1"}',
        '{"type":"typing","active":true}',
        '{"type":"history","limit":5}',
    ]
)


def _mutated(text: str, at: int, how: int, char: str) -> str:
    at = at % (len(text) + 1)
    if how == 0:
        return text[:at]  # cut short
    if how == 1:
        return text[:at] + char + text[at:]
    return text[:at] + text[at + 1 :]


raw_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "null",
            "true",
            "[]",
            "{}",
            "NaN",
            "Infinity",
            '{"type":NaN}',
            "{'type': 'ping'}",
            '{"type":"ping",}',
            '{"type":"ping"',
            '\ufeff{"type":"ping"}',
            '{"type":"ping"}{"type":"ping"}',
            '{"type":"ping"} x',
            '{"type":"ping","type":"typing","active":true}',  # the last one wins
            '{"type":"chat.message","message":"a\\u0000b"}',
            '{"type":"chat.message","message":"\\ud800"}',
            '{"type":"chat.message","message":"\\udbff\\udfff"}',  # a valid pair: U+10FFFF
            '{"message":"\\ud83d\\ude00 tutorial"}',
            "[" * 300 + "]" * 300,
            "[" * 20000 + "]" * 20000,  # deeper than any parser goes: not JSON to us
            '{"type":"ping","x":' + "[" * 6000 + "]" * 6000 + "}",
        ]
    ),
    st.builds(
        _mutated,
        valid_frame_text,
        st.integers(0, 60),
        st.integers(0, 2),
        st.sampled_from(['"', "{", "}", ",", ":", "\\", "\x00", "é"]),
    ),
)

good_text = st.one_of(
    st.text(st.characters(blacklist_categories=["Cc", "Cs"]), min_size=1, max_size=30),
    st.sampled_from(PAYLOADS),
    st.builds(_long, st.sampled_from(["x", "é", "😀"]), st.sampled_from([4000]), st.just(" ")),
)
# Well-formed frames of every type (their effect then depends on the room).
valid_frame = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("chat.message"), "message": good_text},
        optional={"client_id": st.sampled_from(["k1", "k2", "k3", "k4"]) | st.text(max_size=8)},
    ),
    st.fixed_dictionaries({"message": good_text}),  # the tutorial's frame
    st.fixed_dictionaries({"type": st.just("chat.edit"), "id": good_id, "message": good_text}),
    st.fixed_dictionaries({"type": st.just("chat.delete"), "id": good_id}),
    st.fixed_dictionaries({"type": st.just("typing"), "active": st.booleans()}),
    st.fixed_dictionaries(
        {"type": st.just("history")},
        optional={"before": good_id, "limit": st.integers(1, 120) | st.just(10**30)},
    ),
    st.fixed_dictionaries({"type": st.just("read"), "id": good_id}),
    st.just({"type": "ping"}),
)

frame_spec = st.one_of(
    st.builds(Spec, value=valid_frame, ascii=st.booleans(), compact=st.booleans()),
    st.builds(Spec, value=valid_frame, ascii=st.booleans(), compact=st.booleans()),
    st.builds(Spec, value=object_frame(), ascii=st.booleans(), compact=st.booleans()),
    st.builds(Spec, value=object_frame(), ascii=st.booleans(), compact=st.booleans()),
    st.builds(Spec, value=any_json.filter(lambda v: not isinstance(v, dict))),
    st.builds(Spec, raw=raw_text),
    st.builds(Spec, binary=st.binary(max_size=20)),
)
# The last frame, now and then: exactly the size limit, or one byte over it
# (in one-byte or two-byte characters: the limit is in bytes).
last_spec = st.one_of(
    st.none(),
    st.builds(
        Spec,
        value=st.sampled_from(
            [
                {"type": "ping"},
                {"type": "chat.message", "message": "at the limit", "client_id": "big"},
                {"type": "chat.message", "message": "x" * 5000},
            ]
        ),
        size=st.sampled_from([MAX_FRAME_BYTES - 1, MAX_FRAME_BYTES, MAX_FRAME_BYTES + 1]),
        filler=st.sampled_from(["x", "é"]),
    ),
)


def render(spec: Spec, resolve) -> str | bytes:
    """The frame's text (or bytes), with Refs resolved by `resolve`."""
    if spec.binary is not None:
        return spec.binary
    if spec.raw is not None:
        return spec.raw
    tokens: dict[str, str] = {}

    def plain(value):
        if isinstance(value, Ref):
            return resolve(value)
        if isinstance(value, RawToken):
            name = f"RAW{uuid.uuid4().hex}"
            tokens[name] = value.text
            return name
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    value = plain(spec.value)
    if spec.size:
        value = {**value, "pad": ""}
    dumped = json.dumps(
        value,
        # Raw surrogates are not UTF-8: a real server never passes them on.
        ensure_ascii=spec.ascii
        or bool(re.search(r"[\ud800-\udfff]", json.dumps(value, ensure_ascii=False))),
        separators=(",", ":") if spec.compact else None,
    )
    for name, text in tokens.items():
        dumped = dumped.replace(f'"{name}"', text)
    if spec.size:
        room = spec.size - len(dumped.encode())
        width = len(spec.filler.encode())
        pad = spec.filler * (room // width) + "x" * (room % width)
        dumped = dumped.replace('"pad":""', f'"pad":"{pad}"', 1)
        assert len(dumped.encode()) == spec.size
    return dumped


# --- The model of one room, and the socket under test -----------------------------------------


@dataclass(eq=False)
class Msg:
    """A message of the room as the model has it."""

    author: str
    body: str
    client_id: str = ""
    id: int | None = None
    edited: bool = False
    deleted: bool = False


@dataclass(eq=False)
class Broadcast:
    """A room frame this socket must receive, in its own time (it goes through the room)."""

    kind: str  # new, repeat, edit, delete
    msg: Msg
    body: str = ""
    edited: bool = False
    as_delete: bool = False

    def matches(self, frame: dict, known: set[int], me: tuple[str, str]) -> bool:
        msg = self.msg
        if self.kind == "delete" or self.as_delete:
            return frame == {"type": "chat.delete", "id": msg.id}
        if self.kind == "edit":
            return (
                frame["type"] == "chat.edit"
                and frame["id"] == msg.id
                and frame["message"] == self.body
                and isinstance(frame["edited_at"], str)
            )
        if frame["type"] != "chat.message" or (frame["user"], frame["display_name"]) != me:
            return False
        if frame["message"] != self.body or frame["client_id"] != msg.client_id:
            return False
        if not isinstance(frame["ts"], str) or not frame["ts"].endswith("Z"):
            return False
        if self.kind == "new":
            return frame["id"] not in known and frame["edited_at"] is None
        return frame["id"] == msg.id and (frame["edited_at"] is not None) == self.edited


class Stats:
    """What the fuzz run sent and what came back, for the summary line."""

    def __init__(self) -> None:
        self.frames = self.pings = self.sockets = self.closed_1009 = 0
        self.answers: collections.Counter[str] = collections.Counter()

    def line(self) -> str:
        top = ", ".join(f"{k} {v}" for k, v in sorted(self.answers.items()))
        return (
            f"fuzz: {self.frames} frames (and {self.pings} pings after them) over "
            f"{self.sockets} sockets; {self.closed_1009} closed with 1009; answers: {top}"
        )


class Session:
    """One socket of bob's in a fresh room, and the model of that room."""

    def __init__(self, sock, seed: Msg, foreign_id: int, me: tuple[str, str], stats: Stats):
        self.sock = sock
        self.io = sock.communicator
        self.seed = seed
        self.foreign_id = foreign_id
        self.me = me
        self.stats = stats
        self.room_msgs: list[Msg] = [seed]  # what the room holds, in send order
        self.own: list[Msg] = []
        self.by_client_id: dict[str, Msg] = {}
        self.pending: list[Broadcast] = []
        self.deferred: list = []  # checks that need ids not known yet
        self.rate_left: float = float("inf")  # messages the rate limit still lets through
        self.budget: float = float("inf")  # other frames the socket's budget still takes
        self.last_read = 0
        self.open = True
        self.current: str | bytes = ""
        self.sent: list[str | bytes] = []

    # Reading ---------------------------------------------------------------

    def known_ids(self) -> set[int]:
        return {m.id for m in self.room_msgs if m.id is not None} | {self.foreign_id}

    async def next_frame(self) -> dict:
        """The next frame that is not a room broadcast (those go to their expectations)."""
        while True:
            frame = await self.pump()
            if frame is not None:
                return frame

    async def pump(self) -> dict | None:
        """Read one frame: a room broadcast is matched (None), any other is returned."""
        output = await self.io.receive_output(timeout=REPLY_TIMEOUT)
        assert output["type"] == "websocket.send", f"socket closed: {output}"
        assert "text" in output and output.get("bytes") is None, output
        frame = json.loads(output["text"])
        if frame["type"] in ("chat.message", "chat.edit", "chat.delete"):
            self.match(frame)
            return None
        return frame

    def match(self, frame: dict) -> None:
        known = self.known_ids()
        for i, expected in enumerate(self.pending):
            if expected.matches(frame, known, self.me):
                del self.pending[i]
                if expected.kind == "new":
                    expected.msg.id = frame["id"]
                self.stats.answers[f"{frame['type']} ({expected.kind})"] += 1
                return
        pytest.fail(f"unexpected room frame {frame!r}; waiting for {self.pending!r}")

    async def settle(self) -> None:
        """Every broadcast expected so far has arrived."""
        while self.pending:
            if (frame := await self.pump()) is not None:
                pytest.fail(f"unexpected frame {frame!r} while waiting for {self.pending!r}")

    async def id_of(self, msg: Msg) -> int:
        while msg.id is None:
            if (frame := await self.pump()) is not None:
                pytest.fail(f"unexpected frame {frame!r} while waiting for an echo")
        return msg.id

    # Sending ---------------------------------------------------------------

    async def resolve_refs(self, value) -> None:
        """Wait for the echoes of the messages that `value` refers to (their ids)."""
        if isinstance(value, Ref) and value.kind == "own" and self.own:
            await self.id_of(self.own[value.index % len(self.own)])
        elif isinstance(value, dict):
            for v in value.values():
                await self.resolve_refs(v)
        elif isinstance(value, list):
            for v in value:
                await self.resolve_refs(v)

    def resolve(self, ref: Ref) -> int:
        if ref.kind == "own" and self.own:
            return self.own[ref.index % len(self.own)].id
        if ref.kind == "seed":
            return self.seed.id
        if ref.kind == "foreign":
            return self.foreign_id
        return MISSING_ID + ref.index

    async def send(self, spec: Spec, *, last: bool = False) -> None:
        """Send one frame, check what it gets, then check that a ping still gets its pong."""
        if spec.value is not None:
            await self.resolve_refs(spec.value)
        frame = render(spec, self.resolve)
        self.current = frame
        self.sent.append(frame)
        self.stats.frames += 1
        if isinstance(frame, bytes):
            await self.io.send_input({"type": "websocket.receive", "bytes": frame})
            outcome = Outcome({"bad_frame"})
        else:
            if len(frame.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
                assert last, "only the last frame may be over the limit"
                await self.settle()
                await self.io.send_input({"type": "websocket.receive", "text": frame})
                output = await self.io.receive_output(timeout=REPLY_TIMEOUT)
                assert output == {"type": "websocket.close", "code": 1009}, output
                self.stats.closed_1009 += 1
                self.open = False
                return
            await self.io.send_input({"type": "websocket.receive", "text": frame})
            is_json, data = decode(frame)
            outcome = classify(data) if is_json else Outcome({"bad_json"})
        direct = self.apply(outcome)
        if direct is not None:
            await self.expect_direct(direct)
        # The socket stays usable: a ping gets its pong (or, budget spent, rate_limited).
        await self.io.send_input({"type": "websocket.receive", "text": '{"type":"ping"}'})
        self.stats.pings += 1
        if self.take_budget():
            assert await self.next_frame() == {"type": "pong"}
        else:
            await self.expect_direct(Outcome({"rate_limited"}, kind="ping"))

    def take_budget(self) -> bool:
        if self.budget < 1:
            return False
        self.budget -= 1
        return True

    def apply(self, outcome: Outcome):
        """Move the model by one frame; returns what the socket must answer directly (or None)."""
        if outcome.codes:
            return outcome
        kind = outcome.kind
        if kind == "chat.message":
            if self.rate_left < 1:
                return Outcome({"rate_limited"}, kind=kind, client_id=outcome.client_id)
            self.rate_left -= 1
            _, body, client_id = outcome.effect
            original = self.by_client_id.get(client_id) if client_id else None
            if original is not None:  # a retry: the stored message again, or its deletion
                self.pending.append(
                    Broadcast(
                        "repeat",
                        original,
                        body=original.body,
                        edited=original.edited,
                        as_delete=original.deleted,
                    )
                )
                return None
            msg = Msg("bob", body, client_id)
            self.own.append(msg)
            self.room_msgs.append(msg)
            if client_id:
                self.by_client_id[client_id] = msg
            self.pending.append(Broadcast("new", msg, body=body))
            return None
        if not self.take_budget():
            return Outcome({"rate_limited"}, kind=kind, error_id=outcome.error_id)
        if kind in ("chat.edit", "chat.delete"):
            target = self.live(outcome.effect[1])
            if target is None:
                return Outcome({"not_found"}, kind=kind, error_id=outcome.error_id)
            if target.author != "bob":  # bob is a member: only his own
                return Outcome({"forbidden"}, kind=kind, error_id=outcome.error_id)
            if kind == "chat.edit":
                target.body, target.edited = outcome.effect[2], True
                self.pending.append(Broadcast("edit", target, body=target.body))
            else:
                target.deleted = True
                self.pending.append(Broadcast("delete", target))
            return None
        if kind == "read":
            read_id = outcome.effect[1]
            if read_id in {m.id for m in self.room_msgs} and read_id > self.last_read:
                self.last_read = read_id
            self.stats.answers["read (no reply)"] += 1
            return None
        if kind == "history":
            snapshot = [(m, m.body) for m in self.room_msgs if not m.deleted]
            return Outcome(kind="history", effect=(*outcome.effect, snapshot))
        if kind == "ping":
            return Outcome(kind="ping", effect=("ping",))
        self.stats.answers["typing (nothing back)"] += 1
        return None  # typing: nothing comes back to the typist

    def live(self, message_id: int) -> Msg | None:
        for m in self.room_msgs:
            if m.id == message_id and not m.deleted:
                return m
        return None

    async def expect_direct(self, outcome: Outcome) -> None:
        """The socket's own answer to one frame: its error, its pong or its history page."""
        frame = await self.next_frame()
        if outcome.codes:
            assert frame["type"] == "error", (frame, outcome)
            assert frame["code"] in outcome.codes, (frame, outcome)
            assert isinstance(frame["detail"], str) and frame["detail"], frame
            if frame["code"] != "rate_limited":
                assert frame.get("id") == outcome.error_id, (frame, outcome)
            else:
                assert frame.get("id") in (None, outcome.error_id), (frame, outcome)
            if "client_id" in frame:
                assert outcome.kind == "chat.message" and frame["client_id"] == outcome.client_id
            self.stats.answers[frame["code"]] += 1
        elif outcome.kind == "ping":
            assert frame == {"type": "pong"}, frame
            self.stats.answers["pong"] += 1
        else:
            assert outcome.kind == "history", outcome
            assert frame["type"] == "history" and set(frame) == {"type", "messages", "has_more"}
            self.deferred.append((outcome.effect, frame))
            self.stats.answers["history"] += 1

    # The end -----------------------------------------------------------------

    def check_histories(self) -> None:
        for (_, before, limit, snapshot), frame in self.deferred:
            rows = sorted(
                ((m.id, body, m) for m, body in snapshot if before is None or m.id < before),
                key=lambda row: row[0],
            )
            page = rows[-limit:]
            got = [(m["id"], m["message"]) for m in frame["messages"]]
            assert got == [(i, body) for i, body, _ in page], (before, limit, frame)
            assert frame["has_more"] == (len(rows) > limit)
            for item, (_, _, m) in zip(frame["messages"], page, strict=True):
                assert item["type"] == "chat.message" and item["user"] == m.author


# --- The socket fuzzer -----------------------------------------------------------------------


@pytest.fixture
def fuzz_settings(settings, monkeypatch):
    """The limits that would answer most frames `rate_limited` are off (the fuzz sets its own)."""
    settings.CHAT_RATE_LIMIT = None
    settings.CHAT_USER_RATE_LIMIT = None  # per user across rooms, where it exists
    settings.CHAT_MAX_SOCKETS_PER_USER = 0
    settings.CHAT_MAX_MESSAGE_CHARS = MAX_CHARS
    settings.CHAT_HISTORY_PAGE = 50
    monkeypatch.setattr(FrameBudget, "RATE", 0.0)
    monkeypatch.setattr(FrameBudget, "CAPACITY", float("inf"))
    return settings


@pytest.fixture(autouse=True)
def _fresh_connect_caches():
    from chatrooms.hub import hub

    hub.forget_caches()
    yield
    hub.forget_caches()


STATS = Stats()


@pytest.fixture(scope="module", autouse=True)
def _fuzz_summary(request):
    """Say how many frames the fuzzer sent (make fuzz: at least FUZZ_FRAMES)."""
    yield
    if STATS.frames:
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled():
            print("\n" + STATS.line())
        if FUZZ_RANDOM:
            assert STATS.frames >= FUZZ_FRAMES, STATS.line()


@pytest.fixture
def people(user_factory, room_factory):
    """alice, bob (a display name with an RTL override), bob's session, a message elsewhere."""
    alice = user_factory(username="alice", display_name="Alice Liddell")
    bob = user_factory(username="bob", display_name="Bob \u202eevil")
    other = room_factory("Elsewhere", owner=alice, slug="elsewhere")
    foreign = Message.objects.create(room=other, author=alice, body="not in bob's rooms")
    return alice, bob, session_cookie(bob), foreign.id


def _new_room(alice, bob, n: int) -> tuple[Room, Msg]:
    room = Room.objects.create(name=f"Fuzz {n}", slug=f"fuzz-{n}", created_by=alice)
    Membership.objects.create(room=room, user=alice, role=Membership.Role.OWNER)
    Membership.objects.create(room=room, user=bob)
    seed = Message.objects.create(room=room, author=alice, body="alice's")
    return room, Msg("alice", "alice's", id=seed.id)


def _stored_rows(room_id: int) -> list[Message]:
    return list(Message.objects.filter(room_id=room_id).order_by("id"))


def _last_read(room_id: int, user_id: int) -> int:
    return Membership.objects.get(room_id=room_id, user_id=user_id).last_read_id


def assert_valid_message(row: Message, authors: set[int]) -> None:
    """A stored message as docs/protocol.md promises it."""
    body = row.body
    assert body and body == body.strip(), row.id
    assert len(body) <= MAX_CHARS, row.id
    assert not UNSTORABLE.search(body), row.id
    body.encode("utf-8")  # no lone surrogate
    assert len(row.client_id) <= 64 and not UNSTORABLE.search(row.client_id)
    assert row.author_id in authors


def assert_nothing_logged(caplog, at: int) -> None:
    records = [r for r in caplog.records if r.levelno >= at]
    assert not records, [(r.name, r.levelname, r.getMessage()) for r in records]


_rooms = iter(range(1, 10**9))


@hsettings(_profile(FUZZ_FRAMES // FRAMES_PER_SOCKET[0]))
@given(
    specs=st.lists(frame_spec, min_size=FRAMES_PER_SOCKET[0], max_size=FRAMES_PER_SOCKET[1]),
    last=last_spec,
    rate_limit=st.sampled_from([None] * 8 + [3, 10]),
    budget=st.sampled_from([None] * 8 + [10, 40]),
)
async def test_every_frame_gets_its_error_or_its_effect(
    fuzz_settings, people, caplog, monkeypatch, specs, last, rate_limit, budget
):
    alice, bob, cookie, foreign_id = people
    room, seed = await database_sync_to_async(_new_room)(alice, bob, next(_rooms))
    # Past these, frames are answered rate_limited: a window of an hour and a
    # budget that never refills make that exact.
    fuzz_settings.CHAT_RATE_LIMIT = None if rate_limit is None else (rate_limit, 3600.0)
    monkeypatch.setattr(FrameBudget, "CAPACITY", float(budget or "inf"))
    caplog.clear()
    accepted, sock = await open_socket(bob, room.slug, cookie=cookie)
    assert accepted, sock
    STATS.sockets += 1
    session = Session(sock, seed, foreign_id, ("bob", bob.shown_name), STATS)
    session.rate_left = rate_limit if rate_limit is not None else float("inf")
    session.budget = budget if budget is not None else float("inf")
    try:
        hello = await session.next_frame()
        assert hello["type"] == "hello" and [m["id"] for m in hello["messages"]] == [seed.id]
        try:
            for spec in specs:
                await session.send(spec)
            await session.settle()
            if last is not None:
                await session.send(last, last=True)
                if session.open:
                    await session.settle()
            session.check_histories()
        except BaseException as exc:
            exc.add_note(f"waiting for: {session.pending!r:.1000}")
            for n, sent in enumerate(session.sent[-8:]):
                exc.add_note(f"frame -{8 - n}: {sent!r:.300}")
            raise
    finally:
        # After a timeout the communicator has cancelled the app: the failure above tells why.
        with contextlib.suppress(asyncio.CancelledError):
            await sock.close()
    # Nothing invalid is stored, and exactly what the model says.
    rows = await database_sync_to_async(_stored_rows)(room.id)
    for row in rows:
        assert_valid_message(row, {alice.id, bob.id})
    expected = [(m.id, m.author, m.body, m.edited, m.deleted) for m in session.room_msgs]
    got = [
        (
            r.id,
            "alice" if r.author_id == alice.id else "bob",
            r.body,
            r.edited_at is not None,
            r.deleted_at is not None,
        )
        for r in rows
    ]
    assert got == sorted(expected, key=lambda row: row[0])
    assert await database_sync_to_async(_last_read)(room.id, bob.id) == session.last_read
    # WARNING: storage unavailable, a batch that failed, a handler that raised.
    assert_nothing_logged(caplog, 30)


# --- Forms ---------------------------------------------------------------------------------

FORM_EXAMPLES = max(20, FUZZ_FRAMES // 40)
XSS = '<i data-fuzz="x">'  # markup that must never come back unescaped
FORM_CHARS = [
    "\x00",
    "\x01",
    "\x1b",
    "\x7f",
    "\u202e",
    "\u200b",
    "\u00ad",
    "\ufeff",
    "\ue000",
    "\u2028",
]

form_text = st.one_of(
    st.text(max_size=40),  # any unicode: Django's test client cannot send surrogates
    st.text(st.characters(max_codepoint=0x7F), max_size=20),
    st.text(WHITESPACE, max_size=6),
    st.sampled_from(PAYLOADS + [XSS, "General", "new", "enter", "invite", "a" * 80, "-", "_"]),
    st.builds(_inserted, st.text(max_size=20), st.sampled_from(FORM_CHARS), st.integers(0, 20)),
    st.builds(
        _long,
        st.sampled_from(["x", "é", "😀", "a b"]),
        st.sampled_from([64, 65, 80, 81, 150, 151, 250, 251, 3000]),
        st.sampled_from(["", "  "]),
    ),
)
FORMAT_OR_CONTROL = {"Cc", "Cf", "Cs", "Co"}
# Mostly what people type, so that the valid half of each form runs as often.
plain_text = st.text(
    st.characters(categories=["Lu", "Ll", "Nd", "Zs", "P", "S"]), min_size=1, max_size=40
)
some_text = weighted((2, plain_text), (1, form_text))


def assert_clean_line(value: str, max_length: int, *, required: bool) -> None:
    """A stored one-line text: trimmed, single spaces, nothing invisible or controlling."""
    assert value == " ".join(value.split()), repr(value)
    assert len(value) <= max_length
    assert not required or value
    assert not any(unicodedata.category(ch) in FORMAT_OR_CONTROL for ch in value), repr(value)


def line_accepted(value: str, max_length: int, *, required: bool) -> bool:
    """The rule for one-line fields (names, topics, display names), restated."""
    value = value.strip()  # Django's CharField strips, then checks the length
    if len(value) > max_length or "\x00" in value:
        return False
    value = " ".join(value.split())
    if required and not value:
        return False
    return not any(unicodedata.category(ch) in FORMAT_OR_CONTROL for ch in value)


def assert_valid_room(room: Room) -> None:
    """A stored room: the model's validators pass, the name and topic are clean, the slug too."""
    room.full_clean(validate_unique=False, validate_constraints=False)
    assert_clean_line(room.name, 80, required=True)
    assert_clean_line(room.topic, 250, required=False)
    assert re.fullmatch(r"[-a-zA-Z0-9_]{1,50}", room.slug) and room.slug not in {
        "new",
        "enter",
        "invite",
    }


def assert_answered(response, *, ok: set[int]) -> None:
    """Not a server error; a page that is not a redirect shows the form's errors."""
    event(f"HTTP {response.status_code}")
    assert response.status_code < 500, response.status_code
    assert response.status_code in ok | {302}, response.status_code
    if response.status_code != 302 and response.get("Content-Type", "").startswith("text/html"):
        assert XSS not in response.content.decode()


@pytest.fixture
def form_settings(settings):
    """The creation and sign-in rate limits are off: every example gets its form checked."""
    settings.CHAT_ROOM_CREATE_RATE = None
    settings.CHAT_INVITE_CREATE_RATE = None
    settings.ACCOUNT_RATE_LIMITS = False
    return settings


@pytest.fixture
def owner(user_factory, room_factory):
    """alice, signed in on a test client, owning a room with bob in it."""
    from django.test import Client

    alice = user_factory(username="alice")
    bob = user_factory(username="bob")
    room = room_factory("Owned", owner=alice, slug="owned", members=[bob])
    client = Client()
    client.force_login(alice)
    return client, alice, bob, room


@hsettings(_profile(FORM_EXAMPLES))
@given(name=some_text, topic=some_text, private=st.sampled_from(["", "on", "\x00", "yes"]))
def test_room_create_form(form_settings, owner, caplog, name, topic, private):
    caplog.clear()  # one record list for every example of the test
    client, alice, _, _ = owner
    before = set(Room.objects.values_list("id", flat=True))
    # A name already used by a room alice can see is refused (README, "Rooms").
    taken = selectors.room_with_same_name(user_id=alice.id, name=name) is not None
    response = client.post("/chats/new/", {"name": name, "topic": topic, "is_private": private})
    assert_answered(response, ok={400})
    valid = (
        line_accepted(name, 80, required=True)
        and line_accepted(topic, 250, required=False)
        and not taken
    )
    assert (response.status_code == 302) == valid, response.status_code
    if not valid:
        assert response.context["create_form"].errors
    created = Room.objects.exclude(id__in=before)
    assert len(created) == (response.status_code == 302)
    for room in created:
        assert_valid_room(room)
        assert response["Location"] == f"/chats/{room.slug}/"
        assert Membership.objects.get(room=room, user=alice).role == "owner"
    assert_nothing_logged(caplog, 40)


@hsettings(_profile(FORM_EXAMPLES))
@given(name=some_text)
def test_room_enter_form(form_settings, owner, caplog, name):
    caplog.clear()  # one record list for every example of the test
    client, *_ = owner
    before = set(Room.objects.values_list("id", flat=True))
    response = client.post("/chats/enter/", {"name": name})
    assert_answered(response, ok={400, 403})
    if response.status_code != 302:
        assert response.context["enter_form"].errors
    for room in Room.objects.exclude(id__in=before):
        assert_valid_room(room)
        assert not room.is_private
    assert_nothing_logged(caplog, 40)


@hsettings(_profile(FORM_EXAMPLES))
@given(name=some_text, topic=some_text)
def test_room_settings_form(form_settings, owner, caplog, name, topic):
    caplog.clear()  # one record list for every example of the test
    client, _, _, room = owner
    response = client.post(
        f"/chats/{room.slug}/settings/", {"action": "rename", "name": name, "topic": topic}
    )
    assert_answered(response, ok={400})
    valid = line_accepted(name, 80, required=True) and line_accepted(topic, 250, required=False)
    assert (response.status_code == 302) == valid, response.status_code
    if not valid:
        assert response.context["settings_form"].errors
    room.refresh_from_db()
    assert_valid_room(room)
    assert_nothing_logged(caplog, 40)


@hsettings(_profile(FORM_EXAMPLES))
@given(
    lifetime=weighted((3, st.sampled_from(["1h", "1d", "7d", "never"])), (1, form_text)),
    max_uses=weighted(
        (4, st.integers(1, 100000).map(str) | st.just("")),
        (1, st.integers(-(10**20), 10**20).map(str)),
        (1, st.sampled_from(["0", "1", "100000", "100001", "1e3", "1.5", " 7 ", "٣"])),
        (1, form_text),
    ),
)
def test_invite_create_form(form_settings, owner, caplog, lifetime, max_uses):
    caplog.clear()  # one record list for every example of the test
    client, _, _, room = owner
    response = client.post(
        f"/chats/{room.slug}/settings/",
        {"action": "invite", "lifetime": lifetime, "max_uses": max_uses},
    )
    assert_answered(response, ok={400})
    if response.status_code != 302:
        assert response.context["invite_form"].errors
    for invite in Invite.objects.filter(room=room):
        invite.full_clean(validate_unique=False, validate_constraints=False)
        assert invite.max_uses is None or 1 <= invite.max_uses <= 100000
        assert invite.use_count == 0 and invite.revoked_at is None
    assert_nothing_logged(caplog, 40)


@hsettings(_profile(FORM_EXAMPLES))
@given(
    action=weighted(
        (4, st.sampled_from(["kick", "ban", "unban", "promote", "demote", "transfer"])),
        (1, st.sampled_from(["revoke", "archive", "unarchive", "rename", "invite"])),
        (1, form_text),
    ),
    target=weighted(
        (4, st.sampled_from(["bob", "alice"])),
        (1, st.sampled_from(["nobody", "", "-1", "1e3", " 1", "٣", "9" * 30])),
        (1, form_text),
    ),
)
@example(action="kick", target="9" * 30)  # past 64 bits: a missing member, not a 500
@example(action="revoke", target="9" * 30)
def test_member_action_forms(form_settings, owner, caplog, action, target):
    caplog.clear()  # one record list for every example of the test
    client, alice, bob, room = owner
    ids = {"bob": str(bob.id), "alice": str(alice.id), "nobody": str(2**40)}
    data = {"action": action, "user": ids.get(target, target), "invite": ids.get(target, target)}
    response = client.post(f"/chats/{room.slug}/settings/", data)
    assert_answered(response, ok={400, 403, 404})
    # Whatever happened, the room still has exactly one owner, and it is valid.
    room.refresh_from_db()
    assert_valid_room(room)
    assert Membership.objects.filter(room=room, role="owner").count() == 1
    assert_nothing_logged(caplog, 40)
    if room.is_archived:  # archive is one of the actions: undo it for the next example
        Room.objects.filter(id=room.id).update(archived_at=None)


@hsettings(_profile(FORM_EXAMPLES))
@given(display_name=some_text)
def test_profile_form(form_settings, owner, caplog, display_name):
    caplog.clear()  # one record list for every example of the test
    client, alice, _, _ = owner
    response = client.post("/accounts/profile/", {"display_name": display_name})
    assert_answered(response, ok={200})
    valid = line_accepted(display_name, 64, required=False)
    assert (response.status_code == 302) == valid, response.status_code
    if not valid:
        assert response.context["form"].errors
    alice.refresh_from_db()
    alice.full_clean()
    assert_clean_line(alice.display_name, 64, required=False)
    assert_nothing_logged(caplog, 40)


@hsettings(_profile(FORM_EXAMPLES))
@given(
    username=weighted(
        (4, st.integers(0, 10**9).map(lambda n: f"user{n}")),
        (1, st.from_regex(r"[\w.@+-]{1,20}", fullmatch=True)),
        (1, form_text),
    ),
    email=weighted(
        (4, st.integers(0, 10**9).map(lambda n: f"u{n}@example.com")),
        (1, st.emails().map(str)),
        (1, form_text),
    ),
    password=weighted((4, st.just("a-good-passphrase-42")), (1, form_text)),
    same=st.sampled_from([True, True, True, False]),
)
def test_signup_form(form_settings, db, caplog, username, email, password, same):
    caplog.clear()  # one record list for every example of the test
    from django.contrib.auth import get_user_model
    from django.core.validators import validate_email
    from django.test import Client

    User = get_user_model()
    before = set(User.objects.values_list("id", flat=True))
    response = Client().post(
        "/accounts/signup/",
        {
            "username": username,
            "email": email,
            "password1": password,
            "password2": password if same else password + "x",
        },
    )
    assert_answered(response, ok={200})
    created = list(User.objects.exclude(id__in=before))
    assert len(created) == (response.status_code == 302)
    if not created:
        assert response.context["form"].errors
    for user in created:
        user.full_clean()  # the username validator, lengths
        validate_email(user.email)
        assert user.username == username.strip() and user.check_password(password)
    assert_nothing_logged(caplog, 40)


@hsettings(_profile(FORM_EXAMPLES))
@given(login=some_text | st.sampled_from(["alice", "alice@example.com"]), password=some_text)
def test_signin_form(form_settings, owner, caplog, login, password):
    caplog.clear()  # one record list for every example of the test
    from django.test import Client

    response = Client().post("/accounts/login/", {"login": login, "password": password})
    assert_answered(response, ok={200})
    assert response.status_code == 200  # none of these is alice's password
    assert response.context["form"].errors
    assert_nothing_logged(caplog, 40)


# --- What the fuzzer found, pinned ---------------------------------------------------------


def test_integers_past_64_bits_stay_integers():
    """{"limit": 10**30} is read as 100, as docs/protocol.md says, not refused."""
    from chatrooms import protocol

    # orjson reads them as floats (1e+30): the limit was refused as not whole.
    event = protocol.parse_client_text(
        '{"type":"history","limit":' + "1" + "0" * 30 + "}", max_chars=10, history_page=50
    )
    assert event == protocol.History(before=None, limit=100)
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.parse_client_text(
            '{"type":"read","id":18446744073709551616}', max_chars=10, history_page=50
        )
    assert refused.value.code == "bad_frame"
    # The hub decodes its control events from Redis as bytes, with the same function.
    assert protocol.decode_json(b'{"user": 7, "n": 100000000000000000000}') == {
        "user": 7,
        "n": 10**20,
    }


def test_frame_size_is_counted_in_utf8_bytes():
    from chatrooms.protocol import MAX_FRAME_BYTES, frame_too_big

    assert not frame_too_big("x" * MAX_FRAME_BYTES)
    assert frame_too_big("x" * (MAX_FRAME_BYTES + 1))
    # Fewer characters than the limit, more bytes: servers count bytes.
    assert frame_too_big("é" * (MAX_FRAME_BYTES // 2 + 1))
    assert not frame_too_big("é" * (MAX_FRAME_BYTES // 2))
    assert frame_too_big("😀" * (MAX_FRAME_BYTES // 4 + 1))


async def test_a_frame_over_64_kib_in_utf8_closes_with_1009_and_one_at_the_limit_is_served(
    fuzz_settings, people
):
    alice, bob, cookie, _ = people
    room, _ = await database_sync_to_async(_new_room)(alice, bob, next(_rooms))
    for size, answer in [
        (MAX_FRAME_BYTES, {"type": "websocket.send", "text": '{"type":"pong"}'}),
        (MAX_FRAME_BYTES + 1, {"type": "websocket.close", "code": 1009}),
    ]:
        accepted, sock = await open_socket(bob, room.slug, cookie=cookie)
        assert accepted
        assert (await sock.recv())["type"] == "hello"
        frame = render(Spec(value={"type": "ping"}, size=size, filler="é"), None)
        assert len(frame) < MAX_FRAME_BYTES  # under the limit in characters, not in bytes
        await sock.send(frame)
        assert await sock.communicator.receive_output(timeout=REPLY_TIMEOUT) == answer
        await sock.close()
