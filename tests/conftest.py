"""Shared fixtures: an in-memory store, and a real control plane started with ``kubewire up``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from kubewire.api.registry import Kind, default_registry
from kubewire.store.store import Store

REPO = Path(__file__).resolve().parents[1]


T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def kind(name: str) -> Kind:
    k = default_registry().lookup(name)
    assert k is not None, name
    return k


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store(default_registry(), None)
    yield s
    s.close()


@dataclass
class Cluster:
    """A running control plane in a private state directory, and how to reach it."""

    name: str
    state_dir: Path
    env: dict[str, str]

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / self.name / "kubeconfig"

    def kubewire(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kubewire.cli.main", "--name", self.name, *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            input=input,
            timeout=60,
        )

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["kubectl", *args], env=self.env, capture_output=True, text=True, input=input, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc


def start_cluster(tmp: Path, name: str = "test", up_args: tuple[str, ...] = ("--no-nodes",)) -> Cluster:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env["KUBEWIRE_STATE_DIR"] = str(tmp)
    env["KUBECONFIG"] = str(tmp / name / "kubeconfig")
    env["HOME"] = str(tmp)  # kubectl's discovery cache stays inside the test's directory
    cluster = Cluster(name, tmp, env)
    proc = cluster.kubewire("up", "--timeout", "30", *up_args, check=False)
    if proc.returncode != 0:
        cluster.kubewire("down", check=False)
        raise AssertionError(f"kubewire up failed:\n{proc.stdout}\n{proc.stderr}")
    return cluster


def stop_cluster(cluster: Cluster) -> None:
    cluster.kubewire("down", check=False)


needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed on this machine")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(tmp_path_factory.mktemp("kubewire"))
    try:
        yield c
    finally:
        stop_cluster(c)
