"""The registry of what kubewire created on this machine for one cluster.

Every network namespace is written here *before* it is created (and fsynced), so after any crash
the registry is a superset of what exists: ``kubewire down`` deletes exactly those names and never
anything found by pattern.  One line per name; removal rewrites the file atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class Owned:
    """A per-cluster, append-before-create list of namespace names."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def names(self) -> list[str]:
        try:
            return [line for line in self.path.read_text().splitlines() if line]
        except FileNotFoundError:
            return []

    def add(self, name: str) -> None:
        with self._locked():
            if name in self.names():
                return
            with open(self.path, "a") as f:
                f.write(name + "\n")
                f.flush()
                os.fsync(f.fileno())

    def remove(self, name: str) -> None:
        with self._locked():
            names = [n for n in self.names() if n != name]
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(n + "\n" for n in names))
            os.replace(tmp, self.path)
