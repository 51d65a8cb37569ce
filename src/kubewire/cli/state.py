"""Per-cluster state directories: where a cluster's store, token, kubeconfig and pid live.

``$XDG_STATE_HOME/kubewire/<name>`` (default ``~/.local/state/kubewire/<name>``), overridable
with ``KUBEWIRE_STATE_DIR``.  Each cluster has its own directory, port and token, so two clusters
run side by side without touching each other.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubewire.api.netconfig import ClusterNetwork

NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?")


def state_root(env: dict[str, str]) -> Path:
    if env.get("KUBEWIRE_STATE_DIR"):
        return Path(env["KUBEWIRE_STATE_DIR"])
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME", "/root")) / ".local" / "state")
    return Path(base) / "kubewire"


@dataclass(frozen=True)
class ClusterState:
    """Paths and persistent settings of one named cluster."""

    name: str
    dir: Path

    @property
    def token_path(self) -> Path:
        return self.dir / "token"

    @property
    def port_path(self) -> Path:
        return self.dir / "port"

    @property
    def pid_path(self) -> Path:
        return self.dir / "controlplane.pid"

    @property
    def log_path(self) -> Path:
        return self.dir / "controlplane.log"

    @property
    def kubeconfig_path(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def ready_path(self) -> Path:
        return self.dir / "ready"

    @property
    def ca_path(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def cert_path(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def key_path(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def network_path(self) -> Path:
        return self.dir / "network.json"

    def network(self) -> ClusterNetwork:
        """The network the cluster was created with (defaults for clusters made before it was kept)."""
        try:
            return ClusterNetwork.from_dict(json.loads(self.network_path.read_text()))
        except FileNotFoundError:
            return ClusterNetwork()

    @property
    def settings_path(self) -> Path:
        return self.dir / "cluster.json"

    def settings(self) -> dict[str, Any]:
        """Node count, zones, node labels and the node monitor grace period the cluster was made with."""
        try:
            data: dict[str, Any] = json.loads(self.settings_path.read_text())
            return data
        except FileNotFoundError:
            return {}

    def exists(self) -> bool:
        return self.token_path.exists()

    def token(self) -> str:
        return self.token_path.read_text().strip()

    def port(self) -> int:
        return int(self.port_path.read_text().strip())

    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.port()}"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def initialise(self, network: ClusterNetwork | None = None, settings: dict[str, Any] | None = None) -> None:
        """Create the directory, a token, a free loopback port, the network settings and the
        kubeconfig (once: an existing cluster keeps the network it was made with)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.network_path.exists():
            self.network_path.write_text(json.dumps((network or ClusterNetwork()).to_dict(), indent=2) + "\n")
        if not self.settings_path.exists() and settings is not None:
            self.settings_path.write_text(json.dumps(settings, indent=2) + "\n")
        if not self.token_path.exists():
            self.token_path.write_text(secrets.token_urlsafe(32) + "\n")
            self.token_path.chmod(0o600)
        if not self.port_path.exists():
            self.port_path.write_text(f"{free_port()}\n")
        if not self.key_path.exists():
            from kubewire.apiserver.pki import make_serving_pair  # cryptography: only when minting

            pair = make_serving_pair(self.name)
            self.ca_path.write_bytes(pair.ca_cert)
            self.cert_path.write_bytes(pair.cert)
            self.key_path.write_bytes(pair.key)
            self.key_path.chmod(0o600)
        self.write_kubeconfig()

    def write_kubeconfig(self) -> None:
        ctx = f"kubewire-{self.name}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": ctx,
                    "cluster": {
                        "server": self.server_url(),
                        "certificate-authority-data": base64.b64encode(self.ca_path.read_bytes()).decode(),
                    },
                }
            ],
            "users": [{"name": ctx, "user": {"token": self.token()}}],
            "contexts": [{"name": ctx, "context": {"cluster": ctx, "user": ctx, "namespace": "default"}}],
            "current-context": ctx,
            "preferences": {},
        }
        self.kubeconfig_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig_path.chmod(0o600)


def cluster_state(name: str, env: dict[str, str]) -> ClusterState:
    if not NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid cluster name {name!r}: use lower-case letters, digits and '-', at most 32 characters"
        )
    return ClusterState(name, state_root(env) / name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
