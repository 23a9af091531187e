"""The sidecar's Unix socket: bound once, stale files replaced, live listeners and odd paths refused."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from sidecar.cli.unix_socket import (
    INHERITED_FD_ENV,
    SocketInUse,
    bind_unix_socket,
    inherited_socket,
    remove_socket_file,
)


def test_binds_a_listening_socket_children_can_inherit(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    sock = bind_unix_socket(path, 16)
    try:
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        assert sock.get_inheritable()
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(path)
        accepted, _ = sock.accept()
        client.sendall(b"ping")
        assert accepted.recv(4) == b"ping"
        accepted.close()
        client.close()
    finally:
        sock.close()
    remove_socket_file(path)
    assert not os.path.exists(path)


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    bind_unix_socket(path, 1).close()  # closed without unlinking: what a killed sidecar leaves
    assert os.path.exists(path)
    sock = bind_unix_socket(path, 1)
    sock.close()


def test_a_live_listener_is_not_taken_over(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    live = bind_unix_socket(path, 1)
    try:
        with pytest.raises(SocketInUse, match="another process is listening"):
            bind_unix_socket(path, 1)
    finally:
        live.close()


def test_a_regular_file_and_an_overlong_path_are_refused(tmp_path: Path) -> None:
    regular = tmp_path / "not-a-socket"
    regular.write_text("x")
    with pytest.raises(ValueError, match="not a socket"):
        bind_unix_socket(str(regular), 1)
    assert regular.read_text() == "x"
    with pytest.raises(ValueError, match="longer than 107 bytes"):
        bind_unix_socket("/tmp/" + "x" * 120, 1)


def test_a_worker_child_finds_its_inherited_socket(tmp_path: Path) -> None:
    listening = bind_unix_socket(str(tmp_path / "s.sock"), 1)
    try:
        assert inherited_socket({}) is None
        duplicate = os.dup(listening.fileno())
        inherited = inherited_socket({INHERITED_FD_ENV: str(duplicate)})
        assert inherited is not None
        assert inherited.family == socket.AF_UNIX
        inherited.close()
    finally:
        listening.close()
