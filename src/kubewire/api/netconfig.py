"""A cluster's network settings: address families, CIDRs and port ranges, with kubewire's defaults.

One immutable value built once (by the CLI, from flags or the cluster config) and handed to the
parts that allocate from it: the Service IP and NodePort allocators (API-server side), node IPAM
and the EndpointSlice controller.  The defaults are the conventions of the design: pods in
10.244.0.0/16 (a /24 per node) and fd00:10:244::/56 (a /64 per node), Services in 10.96.0.0/16
and fd00:10:96::/112, NodePorts 30000–32767 (kube-apiserver's ``--service-node-port-range``), the
node fabric 172.18.0.0/16 and fc00:f853:ccd:e793::/64, cluster DNS at 10.96.0.10.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

IP_FAMILIES = ("ipv4", "ipv6", "dual")
POD_NETWORKS = ("routed", "vxlan")
PROXY_MODES = ("nftables", "iptables")


@dataclass(frozen=True)
class ClusterNetwork:
    """Which families the cluster runs and the ranges each allocator hands out."""

    ip_family: str = "ipv4"
    pod_cidr_v4: str = "10.244.0.0/16"
    pod_cidr_v6: str = "fd00:10:244::/56"
    node_mask_v4: int = 24
    node_mask_v6: int = 64
    service_cidr_v4: str = "10.96.0.0/16"
    service_cidr_v6: str = "fd00:10:96::/112"
    node_port_range: tuple[int, int] = (30000, 32767)
    max_endpoints_per_slice: int = 100  # kube-controller-manager's --max-endpoints-per-slice
    fabric_cidr_v4: str = "172.18.0.0/16"
    fabric_cidr_v6: str = "fc00:f853:ccd:e793::/64"
    cluster_dns_v4: str = "10.96.0.10"
    cluster_dns_v6: str = "fd00:10:96::a"
    cluster_domain: str = "cluster.local"
    pod_network: str = "routed"  # "routed" (a route per peer node, as kindnet) or "vxlan" (an overlay, as flannel)
    proxy_mode: str = "nftables"  # kube-proxy's --proxy-mode: "nftables" (flat maps) or "iptables" (upstream chains)

    def __post_init__(self) -> None:
        if self.ip_family not in IP_FAMILIES:
            raise ValueError(f"ip family must be one of {', '.join(IP_FAMILIES)}, not {self.ip_family!r}")
        for cidr in (self.pod_cidr_v4, self.pod_cidr_v6, self.service_cidr_v4, self.service_cidr_v6):
            ipaddress.ip_network(cidr)  # raises ValueError with the offending text
        if self.proxy_mode not in PROXY_MODES:
            raise ValueError(f"proxy mode must be one of {', '.join(PROXY_MODES)}, not {self.proxy_mode!r}")
        if self.pod_network not in POD_NETWORKS:
            raise ValueError(f"pod network must be one of {', '.join(POD_NETWORKS)}, not {self.pod_network!r}")
        low, high = self.node_port_range
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"invalid node port range {low}-{high}")

    @property
    def families(self) -> tuple[str, ...]:
        """``IPv4``/``IPv6`` in the cluster's primary-first order."""
        return {"ipv4": ("IPv4",), "ipv6": ("IPv6",), "dual": ("IPv4", "IPv6")}[self.ip_family]

    @property
    def service_cidrs(self) -> list[str]:
        by_family = {"IPv4": self.service_cidr_v4, "IPv6": self.service_cidr_v6}
        return [by_family[f] for f in self.families]

    @property
    def pod_cidrs(self) -> list[str]:
        by_family = {"IPv4": self.pod_cidr_v4, "IPv6": self.pod_cidr_v6}
        return [by_family[f] for f in self.families]

    @property
    def node_mask_sizes(self) -> list[int]:
        by_family = {"IPv4": self.node_mask_v4, "IPv6": self.node_mask_v6}
        return [by_family[f] for f in self.families]

    @property
    def cluster_dns(self) -> list[str]:
        """The cluster DNS Service addresses, primary family first (kubelet's ``--cluster-dns``)."""
        by_family = {"IPv4": self.cluster_dns_v4, "IPv6": self.cluster_dns_v6}
        return [by_family[f] for f in self.families]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ipFamily": self.ip_family,
            "podCIDRs": {"ipv4": self.pod_cidr_v4, "ipv6": self.pod_cidr_v6},
            "serviceCIDRs": {"ipv4": self.service_cidr_v4, "ipv6": self.service_cidr_v6},
            "nodePortRange": f"{self.node_port_range[0]}-{self.node_port_range[1]}",
            "maxEndpointsPerSlice": self.max_endpoints_per_slice,
            "fabricCIDRs": {"ipv4": self.fabric_cidr_v4, "ipv6": self.fabric_cidr_v6},
            "clusterDNS": {"ipv4": self.cluster_dns_v4, "ipv6": self.cluster_dns_v6},
            "clusterDomain": self.cluster_domain,
            "podNetwork": self.pod_network,
            "kubeProxyMode": self.proxy_mode,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterNetwork:
        """The inverse of :meth:`to_dict`; missing keys take the defaults."""
        base = cls()
        pods = data.get("podCIDRs") or {}
        services = data.get("serviceCIDRs") or {}
        ports = str(data.get("nodePortRange") or f"{base.node_port_range[0]}-{base.node_port_range[1]}")
        low, _, high = ports.partition("-")
        fabric = data.get("fabricCIDRs") or {}
        dns = data.get("clusterDNS") or {}
        return cls(
            ip_family=str(data.get("ipFamily") or base.ip_family),
            pod_cidr_v4=str(pods.get("ipv4") or base.pod_cidr_v4),
            pod_cidr_v6=str(pods.get("ipv6") or base.pod_cidr_v6),
            service_cidr_v4=str(services.get("ipv4") or base.service_cidr_v4),
            service_cidr_v6=str(services.get("ipv6") or base.service_cidr_v6),
            node_port_range=(int(low), int(high or low)),
            max_endpoints_per_slice=int(data.get("maxEndpointsPerSlice") or base.max_endpoints_per_slice),
            fabric_cidr_v4=str(fabric.get("ipv4") or base.fabric_cidr_v4),
            fabric_cidr_v6=str(fabric.get("ipv6") or base.fabric_cidr_v6),
            cluster_dns_v4=str(dns.get("ipv4") or base.cluster_dns_v4),
            cluster_dns_v6=str(dns.get("ipv6") or base.cluster_dns_v6),
            cluster_domain=str(data.get("clusterDomain") or base.cluster_domain),
            pod_network=str(data.get("podNetwork") or base.pod_network),
            proxy_mode=str(data.get("kubeProxyMode") or base.proxy_mode),
        )
