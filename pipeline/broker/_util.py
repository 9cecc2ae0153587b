"""Small OS helpers for the embedded broker: file locks, process checks, free ports, log tails.

Kept apart from the lifecycle code so each piece stays small and testable on its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

#: Popen handles of brokers this process launched, kept so their exit status can be
#: collected: a dead child that is never waited for stays a zombie and looks alive.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
#: Exit codes of reaped children, so an error message can still say how a node died.
_EXITED: dict[int, int] = {}

LOOPBACK = "127.0.0.1"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path``.

    Two processes (a CLI and a pytest session, or pytest-xdist workers) may fetch jars or
    start the same cluster at once; the lock makes the second wait and then reuse the result.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def remember_child(proc: subprocess.Popen[bytes]) -> None:
    """Keep the handle of a launched broker so :func:`reap` can collect its exit status."""
    _EXITED.pop(proc.pid, None)  # a recycled pid of a child that died earlier
    _CHILDREN[proc.pid] = proc


def reap(pid: int) -> int | None:
    """Exit status of our own child ``pid``; ``None`` while it runs or if it is not ours."""
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        _EXITED[pid] = proc.returncode
        _CHILDREN.pop(pid, None)
    return _EXITED.get(pid)


def _proc_state(pid: int) -> str | None:
    """The one-letter state from ``/proc/<pid>/stat`` ('Z' = zombie), or ``None`` without procfs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "X" if Path("/proc/self/stat").exists() else None
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0] if ")" in stat else None


def process_cmdline(pid: int) -> str | None:
    """The command line of ``pid``, or ``None``/'' if it cannot be read right now.

    Used to make sure a pid from a pid file still is *our* broker and not an unrelated
    process that got the same pid after a reboot.
    """
    if Path("/proc/self/cmdline").exists():
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            return None
    try:
        out = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, timeout=5,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def pid_alive(pid: int, must_contain: str) -> bool:
    """True if ``pid`` runs and (when it can be read) its command line contains ``must_contain``.

    For a broker this process launched, the Popen handle is authoritative. Otherwise a
    zombie counts as dead, and an empty command line (a process caught mid-exec) as
    "cannot tell", which is treated as alive rather than as a crash.
    """
    if pid in _CHILDREN:
        return reap(pid) is None
    if pid in _EXITED:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process: not a broker we started
    if _proc_state(pid) in ("Z", "X"):
        return False
    cmd = process_cmdline(pid)
    return not cmd or must_contain in cmd


def wait_gone(pid: int, must_contain: str, timeout: float) -> bool:
    """Wait until ``pid`` has exited; True if it did within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid, must_contain):
            return True
        time.sleep(0.1)
    return not pid_alive(pid, must_contain)


def signal_pid(pid: int, sig: int) -> None:
    """Send ``sig`` to ``pid``, ignoring a process that is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def port_free(port: int, host: str = LOOPBACK) -> bool:
    """True if ``host:port`` can be bound now.

    SO_REUSEADDR mirrors what the JVM does, so a port left in TIME_WAIT by a broker that
    just stopped does not count as taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct ports the OS reports free right now (bound together, then released)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist), for error messages."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
