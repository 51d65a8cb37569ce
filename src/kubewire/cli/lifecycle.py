"""Starting, adopting and stopping a cluster's control plane process.

``up`` is idempotent: a live control plane (its pid alive and answering ``/readyz``) is adopted,
not duplicated.  A start that fails prints why (the tail of the control plane's log) and leaves
nothing behind: the process is ended by its pid and state created by this start is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubewire.api.netconfig import ClusterNetwork
from kubewire.cli.state import ClusterState


class LifecycleError(Exception):
    """A cluster could not be started, found or stopped; the message says why."""


def examples_dir() -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[3] / "examples", here.parents[1] / "examples"):
        if candidate.is_dir():
            return candidate
    raise LifecycleError("the example manifests are not installed")


def run_controlplane(state: ClusterState, durability: str) -> int:
    from kubewire.apiserver.controlplane import ControlPlaneSettings, run  # only the control plane pays for it

    grace = float(state.settings().get("nodeMonitorGracePeriod") or 50.0)
    settings = ControlPlaneSettings(
        state.dir,
        "127.0.0.1",
        state.port(),
        state.token(),
        durability,
        state.network(),
        node_monitor_grace_period=grace,
        cluster_dns=bool(state.settings().get("clusterDNS", False)),
    )
    asyncio.run(run(settings))
    return 0


def _ready(state: ClusterState, timeout: float = 1.0) -> bool:
    req = urllib.request.Request(state.server_url() + "/readyz", headers={"Authorization": f"Bearer {state.token()}"})
    tls = ssl.create_default_context(cafile=str(state.ca_path))
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=tls) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def up(
    state: ClusterState,
    timeout: float,
    network: ClusterNetwork | None = None,
    settings: dict[str, Any] | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> None:
    """Start the control plane (or adopt a live one) and wait until it serves.

    ``meanwhile`` runs while the new process starts (the node agents are started there, so both
    come up together); it runs when the control plane is adopted too."""
    fresh = not state.exists()
    if not fresh and state.pid() and _ready(state):
        if meanwhile is not None:
            meanwhile()
        return  # already running: adopt it
    state.initialise(network, settings)
    with contextlib.suppress(FileNotFoundError):
        state.ready_path.unlink()
    log = open(state.log_path, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubewire.cli.main", "--name", state.name, "controlplane"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=daemon_env(state),
    )
    log.close()
    state.pid_path.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    failure: Exception | None = None
    if meanwhile is not None:
        try:
            meanwhile()
        except Exception as e:  # stop the new control plane too, then report
            failure = e
    while failure is None and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if state.ready_path.exists() and _ready(state):
            return
        time.sleep(0.02)
    reason = str(failure) if failure is not None else _log_tail(state)
    _stop_pid(proc.pid)
    with contextlib.suppress(FileNotFoundError):
        state.pid_path.unlink()
    if fresh and failure is None:
        shutil.rmtree(state.dir, ignore_errors=True)
    if failure is not None:
        raise failure
    raise LifecycleError(f"the control plane of {state.name!r} did not start:\n{reason}")


def daemon_env(state: ClusterState) -> dict[str, str]:
    """The environment of kubewire's own background processes: the caller's, minus kubeconfig
    settings, with the state directory fixed, and allowed to cache bytecode (a daemon that starts
    often should not recompile kubewire's sources each time, whatever ``PYTHONDONTWRITEBYTECODE`` says)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBECONFIG") and k != "PYTHONDONTWRITEBYTECODE"}
    env["KUBEWIRE_STATE_DIR"] = str(state.dir.parent)
    return env


def _log_tail(state: ClusterState, lines: int = 15) -> str:
    try:
        text = state.log_path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(empty log)"


def _stop_pid(pid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            finished = 0
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        if finished:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def down(state: ClusterState, keep_state: bool = False) -> None:
    pid = state.pid()
    if pid is not None:
        _stop_pid(pid)
    for path in (state.pid_path, state.ready_path):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    if not keep_state:
        shutil.rmtree(state.dir, ignore_errors=True)


def require_running(state: ClusterState) -> None:
    if not state.exists() or state.pid() is None:
        raise LifecycleError(f"cluster {state.name!r} is not running; start it with 'kubewire --name {state.name} up'")


async def status(state: ClusterState) -> str:
    if not state.exists():
        return f"cluster {state.name}: absent"
    pid = state.pid()
    if pid is None:
        return f"cluster {state.name}: stopped (state kept in {state.dir})"
    return f"cluster {state.name}: running (pid {pid})\n  API server: {state.server_url()}\n  kubeconfig: {state.kubeconfig_path}"


def _command() -> str:
    """How the user can call kubewire again: by name when it is on PATH, else by its path."""
    installed = Path(sys.executable).parent / "kubewire"
    if shutil.which("kubewire") == str(installed) or not installed.exists():
        return "kubewire"
    return str(installed)


def welcome(state: ClusterState, with_nodes: bool = True) -> str:
    kw = f"{_command()} --name {state.name}" if state.name != "kubewire" else _command()
    lines = [
        f"kubewire cluster {state.name!r} is up: {state.server_url()}",
        "",
        "Try:",
        f"  export KUBECONFIG={state.kubeconfig_path}",
        "  kubectl get nodes,pods -o wide",
    ]
    if with_nodes:
        lines += [
            "  kubectl logs deploy/echo",
            f"  {kw} exec client -- ip -br addr                    # the client namespace, on the node network",
            f"  {kw} exec deploy/echo -- curl -s http://echo/         # a Service by its DNS name, from a pod",
            f"  {kw} exec deploy/echo -- dig +short echo.default.svc.cluster.local   # the cluster DNS",
            f"  {kw} exec client -- curl -s http://172.18.0.2:30007/   # a NodePort from outside the cluster",
            f"  {kw} proxy rules                                     # the kernel rules behind the Services",
            f"  {kw} exec node/{state.name}-worker -- ip route        # a node's pod routes",
            f"  {kw} node stop {state.name}-worker2                   # cut a node off; watch it go NotReady",
        ]
    lines += [f"  {kw} down"]
    if not with_nodes:
        lines.insert(2, "(control plane only: no nodes run pods; 'up' without --no-nodes starts them)")
    return "\n".join(lines) + "\n"
