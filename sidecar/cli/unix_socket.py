"""The Unix domain socket Envoy reaches the sidecar on (GATEWAY_SIDECAR_SOCKET), shared by all workers.

Loopback TCP costs both processes a TCP stack per write; a Unix socket skips it (`make bench`,
README "Performance"). SO_REUSEPORT does not spread Unix-socket connections, so the first
process binds the socket once and its worker children inherit the listening descriptor (its
number in GATEWAY_SIDECAR_SOCKET_FD): the kernel hands each connection to whichever worker
accepts first.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Mapping
from pathlib import Path

INHERITED_FD_ENV = "GATEWAY_SIDECAR_SOCKET_FD"
# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_PATH_BYTES = 107


class SocketInUse(Exception):
    """Another process accepts connections on the socket path."""


def bind_unix_socket(path: str, backlog: int) -> socket.socket:
    """A listening socket at `path` (mode 0660: Envoy in the same pod group connects). A stale
    socket file left by a killed sidecar is replaced; raises SocketInUse if a live process
    listens there, ValueError for a path too long or a path that is not a socket."""
    if len(os.fsencode(path)) > MAX_PATH_BYTES:
        raise ValueError(f"GATEWAY_SIDECAR_SOCKET={path} is longer than {MAX_PATH_BYTES} bytes")
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o660)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _remove_stale(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ValueError(f"GATEWAY_SIDECAR_SOCKET={path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # nobody listens: left behind by a sidecar that was killed
        return
    finally:
        probe.close()
    raise SocketInUse(f"GATEWAY_SIDECAR_SOCKET={path}: another process is listening there")


def inherited_socket(env: Mapping[str, str] | None = None) -> socket.socket | None:
    """A worker child's listening socket, inherited from its parent (GATEWAY_SIDECAR_SOCKET_FD), or None."""
    fd = (os.environ if env is None else env).get(INHERITED_FD_ENV)
    return socket.socket(fileno=int(fd)) if fd else None


def remove_socket_file(path: str) -> None:
    """Removes the socket file at exit (never fails: the directory may be gone already)."""
    with contextlib.suppress(OSError):
        if Path(path).is_socket():
            os.unlink(path)
