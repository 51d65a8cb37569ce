"""What ``kubewire up`` tells each node agent: its name, namespace, fabric addresses and zone.

Kept apart from the kubelet so that the CLI and the topology code can read and write it without
importing the agent itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class NodeConfig:
    """What ``kubewire up`` tells a node agent (``<node dir>/node.json``)."""

    cluster: str
    name: str
    netns: str
    addresses: tuple[str, ...]
    prefixes: tuple[int, ...]
    zone: str
    state_dir: Path  # the cluster's state directory
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def node_dir(self) -> Path:
        return self.state_dir / "nodes" / self.name

    def to_dict(self) -> Obj:
        return {
            "cluster": self.cluster,
            "name": self.name,
            "netns": self.netns,
            "addresses": list(self.addresses),
            "prefixes": list(self.prefixes),
            "zone": self.zone,
            "labels": self.labels,
        }

    @classmethod
    def load(cls, state_dir: Path, name: str) -> NodeConfig:
        data = json.loads((state_dir / "nodes" / name / "node.json").read_text())
        return cls(
            cluster=data["cluster"],
            name=data["name"],
            netns=data["netns"],
            addresses=tuple(data["addresses"]),
            prefixes=tuple(data["prefixes"]),
            zone=data["zone"],
            state_dir=state_dir,
            labels=dict(data.get("labels") or {}),
        )
