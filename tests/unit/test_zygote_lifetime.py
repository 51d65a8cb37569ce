"""The workload zygote does not outlive its cluster: once the state directory is gone it exits."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import wait_for


def test_zygote_exits_when_its_state_directory_is_removed(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    state.mkdir()
    sock = state / "zygote.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubewire.agents.kubelet.zygote", str(sock)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for("the zygote's socket", lambda: sock.exists() or proc.poll() is not None)
        assert proc.poll() is None
        shutil.rmtree(state)
        # It looks at least every 5 s (its select timeout).
        wait_for("the zygote to exit", lambda: proc.poll() is not None, timeout=15)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
