"""Processes inside namespaces: how a container (or an agent, or ``kubewire exec``) is started.

A process joins a named network namespace (``setns``), gets a private mount namespace in which the
pod's ``/etc/resolv.conf``, ``/etc/hosts`` and ``/etc/hostname`` are bind-mounted over the host's
(what ``ip netns exec`` does with ``/etc/netns``, and what the container runtime does for a pod),
and its own UTS namespace carrying the pod's hostname.  It runs in a session of its own with its
output going straight to a file, so it outlives the agent that started it: an agent restarted
after ``kill -9`` adopts its containers by pid and start time instead of starting them twice.

``enter`` does the same for the calling process (``kubewire exec``), which then ``exec``s the
command so the terminal and stdin pass through untouched.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kubewire.host.netlink import NETNS_DIR

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(netns: str) -> None:
    """Move the calling thread into the named network namespace."""
    fd = os.open(NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns {netns}")
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Sandbox:
    """Where a process runs: network namespace, files mounted over /etc, hostname."""

    netns: str = ""
    mounts: tuple[tuple[str, str], ...] = ()  # (source file, target path)
    hostname: str = ""


def enter(box: Sandbox) -> None:
    """Put the calling process into ``box`` (used after fork, or by ``kubewire exec`` before exec)."""
    if box.netns:
        setns(box.netns)
    if box.mounts:
        _check(_libc.unshare(CLONE_NEWNS), "unshare mount namespace")
        _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
        for source, target in box.mounts:
            if Path(target).exists():
                _check(_libc.mount(source.encode(), target.encode(), None, MS_BIND, None), f"bind {target}")
    if box.hostname:
        _check(_libc.unshare(CLONE_NEWUTS), "unshare UTS namespace")
        name = box.hostname.encode()
        _check(_libc.sethostname(name, len(name)), "sethostname")


def _preexec(box: Sandbox) -> Callable[[], None]:
    def run() -> None:
        enter(box)
        # A container gets the default signal dispositions, whatever its parent ignored.
        for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)

    return run


@dataclass(frozen=True)
class Spawned:
    """A started process: pid plus its start time (``/proc/<pid>/stat`` field 22), its identity."""

    pid: int
    start_ticks: int
    popen: subprocess.Popen[bytes] | None = field(default=None, compare=False)


def start(
    argv: Sequence[str],
    box: Sandbox,
    *,
    env: Mapping[str, str],
    cwd: str | None = None,
    log_path: Path | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> Spawned:
    """Start ``argv`` in ``box`` with stdout and stderr appended to ``log_path``.

    Raises ``OSError``/``subprocess.SubprocessError`` with the reason when it cannot start (missing
    executable, bad working directory, namespace gone)."""
    out: int | None = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    try:
        popen = subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=out if out is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            cwd=cwd or None,
            env=dict(env),
            start_new_session=True,
            preexec_fn=_preexec(box),
        )
    finally:
        if out is not None:
            os.close(out)
    return Spawned(popen.pid, start_ticks(popen.pid) or 0, popen)


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None  # a zombie has finished
    return int(fields[19])


def alive(pid: int, ticks: int) -> bool:
    """Whether the process ``pid`` that started at ``ticks`` still runs (a reused pid is not it)."""
    return ticks > 0 and start_ticks(pid) == ticks


def recorded_pid(path: Path) -> int | None:
    """The pid a ``<pid> <start ticks>`` file names, when that very process still runs."""
    try:
        pid, ticks = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        return None
    return pid if alive(pid, ticks) else None


def kill_group(pid: int, sig: int) -> None:
    """Signal a process's whole session group (a container's children go with it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def current_netns_is(netns: str) -> bool:
    """Whether the calling process lives in the named network namespace."""
    inode = netns_inode(netns)
    return inode is not None and os.stat("/proc/self/ns/net").st_ino == inode


def netns_inode(netns: str) -> int | None:
    try:
        return os.stat(NETNS_DIR / netns).st_ino
    except FileNotFoundError:
        return None


def pids_in_netns(inodes: set[int]) -> list[int]:
    """Every process whose network namespace is one of ``inodes``: how ``kubewire down`` finds what
    runs inside a cluster's namespaces after a crash lost the agents' records."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ino = os.stat(f"/proc/{entry}/ns/net").st_ino
        except OSError:
            continue
        if ino in inodes and int(entry) != os.getpid():
            found.append(int(entry))
    return found
