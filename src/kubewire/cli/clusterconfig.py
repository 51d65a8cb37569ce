"""Cluster settings from flags and from a cluster config file, merged once into one value.

The file follows kind's ``Cluster`` config where the settings mean the same thing::

    apiVersion: kubewire.dev/v1alpha1
    kind: Cluster
    nodes: 3                      # or a list: [{labels: {tier: edge}}, {}, {}]
    zones: 3
    nodeMonitorGracePeriod: 50s
    networking:
      ipFamily: dual              # ipv4 | ipv6 | dual
      podSubnet: 10.244.0.0/16,fd00:10:244::/56
      serviceSubnet: 10.96.0.0/16,fd00:10:96::/112
      podNetwork: routed          # routed | vxlan
      kubeProxyMode: nftables     # nftables | iptables

Flags win over the file; a cluster that exists keeps the settings it was made with.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from kubewire.api.netconfig import ClusterNetwork

DEFAULT_NODES = 3
MAX_NODES = 50


class ConfigError(Exception):
    """The cluster config is not valid; the message names the field."""


@dataclass(frozen=True)
class ClusterConfig:
    network: ClusterNetwork = field(default_factory=ClusterNetwork)
    nodes: int = DEFAULT_NODES
    zones: int = 1
    node_labels: tuple[dict[str, str], ...] = ()
    node_monitor_grace_period: float = 50.0
    cluster_dns: bool = True

    def settings(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "zones": self.zones,
            "nodeLabels": list(self.node_labels),
            "nodeMonitorGracePeriod": self.node_monitor_grace_period,
            "clusterDNS": self.cluster_dns,
        }


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(value: Any, where: str) -> float:
    """A number of seconds, or a Go duration (``40s``, ``1m30s``, ``500ms``)."""
    text = str(value).strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ConfigError(f'{where}: Invalid value: "{text}": must be a duration such as 40s')
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f'{where}: Invalid value: "{value}": must be a whole number')
    return value


def _split_subnets(text: str, where: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for part in str(text).split(","):
        try:
            net = ipaddress.ip_network(part.strip())
        except ValueError as e:
            raise ConfigError(f'{where}: Invalid value: "{part.strip()}": {e}') from None
        out[net.version] = str(net)
    return out


def load_file(path: Path) -> ClusterConfig:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read cluster config {path}: {e}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "Cluster":
        raise ConfigError(f"{path}: kind: Required value: expected kind: Cluster")
    cfg = ClusterConfig()
    net = cfg.network
    nodes = doc.get("nodes", DEFAULT_NODES)
    labels: tuple[dict[str, str], ...] = ()
    if isinstance(nodes, list):
        for i, n in enumerate(nodes):
            if n is not None and not isinstance(n, dict):
                raise ConfigError(
                    f'nodes[{i}]: Invalid value: "{n}": must be a node (a mapping such as {{labels: {{}}}})'
                )
        labels = tuple({str(k): str(v) for k, v in ((n or {}).get("labels") or {}).items()} for n in nodes)
        nodes = len(nodes)
    nodes = _int(nodes, "nodes")
    networking = doc.get("networking") or {}
    if not isinstance(networking, dict):
        raise ConfigError(f'networking: Invalid value: "{networking}": must be a mapping')
    changes: dict[str, Any] = {}
    if "ipFamily" in networking:
        changes["ip_family"] = str(networking["ipFamily"])
    if "podNetwork" in networking:
        changes["pod_network"] = str(networking["podNetwork"])
    if "kubeProxyMode" in networking:
        changes["proxy_mode"] = str(networking["kubeProxyMode"])
    for key, v4, v6 in (
        ("podSubnet", "pod_cidr_v4", "pod_cidr_v6"),
        ("serviceSubnet", "service_cidr_v4", "service_cidr_v6"),
    ):
        if key in networking:
            subnets = _split_subnets(networking[key], f"networking.{key}")
            if 4 in subnets:
                changes[v4] = subnets[4]
            if 6 in subnets:
                changes[v6] = subnets[6]
    try:
        net = replace(net, **changes)
    except ValueError as e:
        raise ConfigError(f"networking: {e}") from None
    grace = cfg.node_monitor_grace_period
    if "nodeMonitorGracePeriod" in doc:
        grace = _seconds(doc["nodeMonitorGracePeriod"], "nodeMonitorGracePeriod")
    return ClusterConfig(net, nodes, _int(doc.get("zones", 1), "zones"), labels, grace)


def from_args(args: argparse.Namespace) -> ClusterConfig:
    cfg = load_file(Path(args.config)) if getattr(args, "config", None) else ClusterConfig()
    net = cfg.network
    try:
        if args.ip_family:
            net = replace(net, ip_family=args.ip_family)
        if args.pod_network:
            net = replace(net, pod_network=args.pod_network)
        if getattr(args, "proxy_mode", None):
            net = replace(net, proxy_mode=args.proxy_mode)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    nodes = args.nodes if args.nodes is not None else cfg.nodes
    zones = args.zones if args.zones is not None else cfg.zones
    grace = (
        args.node_monitor_grace_period if args.node_monitor_grace_period is not None else cfg.node_monitor_grace_period
    )
    if not 1 <= nodes <= MAX_NODES:
        raise ConfigError(f"nodes: Invalid value: {nodes}: must be between 1 and {MAX_NODES}")
    if not 1 <= zones <= 26:
        raise ConfigError(f"zones: Invalid value: {zones}: must be between 1 and 26")
    if grace <= 0:
        raise ConfigError(f"nodeMonitorGracePeriod: Invalid value: {grace}: must be greater than zero")
    # Without nodes nothing could run the DNS pods: a control-plane-only cluster has no add-ons.
    dns = not (getattr(args, "no_dns", False) or getattr(args, "no_nodes", False))
    return ClusterConfig(net, nodes, zones, cfg.node_labels, grace, dns)


def differences(args: argparse.Namespace, settings: dict[str, Any], network: ClusterNetwork) -> str:
    """The settings asked for on the command line that an existing cluster does not have."""
    kept = []
    if args.nodes is not None and settings.get("nodes") not in (None, args.nodes):
        kept.append(f"nodes {settings.get('nodes')}")
    if args.zones is not None and settings.get("zones") not in (None, args.zones):
        kept.append(f"zones {settings.get('zones')}")
    if args.ip_family and args.ip_family != network.ip_family:
        kept.append(f"ip family {network.ip_family}")
    if args.pod_network and args.pod_network != network.pod_network:
        kept.append(f"pod network {network.pod_network}")
    if getattr(args, "proxy_mode", None) and args.proxy_mode != network.proxy_mode:
        kept.append(f"proxy mode {network.proxy_mode}")
    return ", ".join(kept)
