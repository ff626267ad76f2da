"""deploy/servers.py: the command lines log no line per request or socket
unless asked to (CHAT_ACCESS_LOG=1, or access_log=True)."""

from __future__ import annotations

import pytest

from deploy.servers import command


@pytest.fixture(autouse=True)
def _no_access_log_setting(monkeypatch):
    monkeypatch.delenv("CHAT_ACCESS_LOG", raising=False)


def test_uvicorn_is_quiet_by_default():
    argv = command("uvicorn", 8001)
    assert "--no-access-log" in argv
    assert argv[argv.index("--log-level") + 1] == "warning"  # no "[accepted]" line per socket


def test_daphne_writes_no_access_log_by_default():
    argv = command("daphne", 8001)
    assert argv[argv.index("--verbosity") + 1] == "0"
    assert "--access-log" not in argv
    assert argv[-1] == "project.asgi:application"


@pytest.mark.parametrize("kind", ["uvicorn", "daphne"])
def test_the_access_log_is_turned_on_by_flag_or_environment(kind, monkeypatch):
    for argv in (command(kind, 8001, access_log=True), None):
        if argv is None:
            monkeypatch.setenv("CHAT_ACCESS_LOG", "1")
            argv = command(kind, 8001)
        assert "--no-access-log" not in argv
        assert "--access-log" in argv
        assert "--verbosity" not in argv or argv[argv.index("--verbosity") + 1] == "1"
