"""Cluster settings from a kind-style config file and from flags (flags win), with upstream-worded errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kubewire.cli.clusterconfig import ClusterConfig, ConfigError, from_args, load_file


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    return path


def args(
    config: Path | None = None,
    ip_family: str | None = None,
    pod_network: str | None = None,
    nodes: int | None = None,
    zones: int | None = None,
    node_monitor_grace_period: float | None = None,
) -> argparse.Namespace:
    return argparse.Namespace(
        config=str(config) if config else None,
        ip_family=ip_family,
        pod_network=pod_network,
        nodes=nodes,
        zones=zones,
        node_monitor_grace_period=node_monitor_grace_period,
    )


# ------------------------------------------------------------------------------------ the file


def test_full_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
apiVersion: kubewire.dev/v1alpha1
kind: Cluster
nodes: 4
zones: 2
nodeMonitorGracePeriod: 40s
networking:
  ipFamily: dual
  podSubnet: 10.100.0.0/16, fd00:100::/56
  serviceSubnet: 10.200.0.0/16,fd00:200::/112
  podNetwork: vxlan
""",
    )
    cfg = load_file(path)
    assert (cfg.nodes, cfg.zones, cfg.node_monitor_grace_period, cfg.node_labels) == (4, 2, 40.0, ())
    net = cfg.network
    assert net.ip_family == "dual" and net.pod_network == "vxlan"
    assert net.pod_cidrs == ["10.100.0.0/16", "fd00:100::/56"]
    assert net.service_cidrs == ["10.200.0.0/16", "fd00:200::/112"]


def test_minimal_file_takes_defaults(tmp_path: Path) -> None:
    cfg = load_file(write(tmp_path, "kind: Cluster\n"))
    assert cfg == ClusterConfig()
    assert cfg.settings() == {
        "nodes": 3,
        "zones": 1,
        "nodeLabels": [],
        "nodeMonitorGracePeriod": 50.0,
        "clusterDNS": True,
    }


def test_single_family_subnet_changes_only_that_family(tmp_path: Path) -> None:
    cfg = load_file(write(tmp_path, "kind: Cluster\nnetworking:\n  podSubnet: fd00:7::/56\n"))
    assert cfg.network.pod_cidr_v6 == "fd00:7::/56"
    assert cfg.network.pod_cidr_v4 == "10.244.0.0/16"


def test_nodes_as_a_list_with_labels(tmp_path: Path) -> None:
    path = write(tmp_path, "kind: Cluster\nnodes:\n- labels: {tier: edge, rack: 1}\n- {}\n-\n")
    cfg = load_file(path)
    assert cfg.nodes == 3
    assert cfg.node_labels == ({"tier": "edge", "rack": "1"}, {}, {})
    assert cfg.settings()["nodeLabels"] == [{"tier": "edge", "rack": "1"}, {}, {}]


@pytest.mark.parametrize(
    ("text", "seconds"), [("40s", 40.0), ("1m", 60.0), ("1.5m", 90.0), ("500ms", 0.5), ("45", 45.0)]
)
def test_grace_period_durations(tmp_path: Path, text: str, seconds: float) -> None:
    cfg = load_file(write(tmp_path, f"kind: Cluster\nnodeMonitorGracePeriod: {text}\n"))
    assert cfg.node_monitor_grace_period == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Config\n", "kind: Required value: expected kind: Cluster"),
        ("- 1\n", "kind: Required value: expected kind: Cluster"),
        ("kind: Cluster\nnodes: three\n", 'nodes: Invalid value: "three": must be a whole number'),
        (
            "kind: Cluster\nnodeMonitorGracePeriod: 1x\n",
            'nodeMonitorGracePeriod: Invalid value: "1x": must be a duration such as 40s',
        ),
        (
            "kind: Cluster\nnodeMonitorGracePeriod: -5s\n",
            'nodeMonitorGracePeriod: Invalid value: "-5s": must be a duration such as 40s',
        ),
        (
            "kind: Cluster\nnetworking:\n  podSubnet: 10.244.0.0/33\n",
            'networking.podSubnet: Invalid value: "10.244.0.0/33": ',
        ),
        (
            "kind: Cluster\nnetworking:\n  serviceSubnet: 10.96.0.0/16,nope\n",
            'networking.serviceSubnet: Invalid value: "nope": ',
        ),
        (
            "kind: Cluster\nnetworking:\n  podSubnet: 10.244.0.1/16\n",
            'networking.podSubnet: Invalid value: "10.244.0.1/16": 10.244.0.1/16 has host bits set',
        ),
        (
            "kind: Cluster\nnetworking:\n  ipFamily: ipv5\n",
            "networking: ip family must be one of ipv4, ipv6, dual, not 'ipv5'",
        ),
        (
            "kind: Cluster\nnetworking:\n  podNetwork: flannel\n",
            "networking: pod network must be one of routed, vxlan, not 'flannel'",
        ),
    ],
)
def test_file_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_file(write(tmp_path, text))
    assert message in str(err.value)


def test_bad_kind_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "kind: Pod\n")
    with pytest.raises(ConfigError, match=r"cluster\.yaml: kind: Required value"):
        load_file(path)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read cluster config"):
        load_file(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="cannot read cluster config"):
        load_file(write(tmp_path, "kind: [unclosed\n"))


def test_non_numeric_zones_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="zones"):
        load_file(write(tmp_path, "kind: Cluster\nzones: three\n"))


def test_node_list_entry_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nodes"):
        load_file(write(tmp_path, "kind: Cluster\nnodes: [worker]\n"))


# ------------------------------------------------------------------------------------ flags


def test_no_config_no_flags_is_the_default() -> None:
    assert from_args(args()) == ClusterConfig()


def test_flags_win_over_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "kind: Cluster\nnodes: [{labels: {a: b}}, {}]\nzones: 2\nnodeMonitorGracePeriod: 1m\n"
        "networking: {ipFamily: dual, podNetwork: vxlan, podSubnet: '10.9.0.0/16'}\n",
    )
    from_file = from_args(args(path))
    assert (from_file.nodes, from_file.zones, from_file.node_monitor_grace_period) == (2, 2, 60.0)
    assert from_file.network.ip_family == "dual" and from_file.network.pod_network == "vxlan"
    cfg = from_args(args(path, "ipv6", "routed", 5, 3, 20.0))
    assert (cfg.nodes, cfg.zones, cfg.node_monitor_grace_period) == (5, 3, 20.0)
    assert cfg.network.ip_family == "ipv6" and cfg.network.pod_network == "routed"
    assert cfg.network.pod_cidr_v4 == "10.9.0.0/16"  # what no flag sets still comes from the file
    assert cfg.node_labels == ({"a": "b"}, {})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nodes": 0}, "nodes: Invalid value: 0: must be between 1 and 50"),
        ({"nodes": 51}, "nodes: Invalid value: 51: must be between 1 and 50"),
        ({"zones": 0}, "zones: Invalid value: 0: must be between 1 and 26"),
        ({"zones": 27}, "zones: Invalid value: 27: must be between 1 and 26"),
        (
            {"node_monitor_grace_period": 0.0},
            "nodeMonitorGracePeriod: Invalid value: 0.0: must be greater than zero",
        ),
        (
            {"node_monitor_grace_period": -1.0},
            "nodeMonitorGracePeriod: Invalid value: -1.0: must be greater than zero",
        ),
        ({"ip_family": "ipv5"}, "ip family must be one of ipv4, ipv6, dual, not 'ipv5'"),
        ({"pod_network": "calico"}, "pod network must be one of routed, vxlan, not 'calico'"),
    ],
)
def test_flag_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_args(args(**kwargs))  # type: ignore[arg-type]
    assert str(err.value) == message


def test_out_of_range_values_from_the_file_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nodes: Invalid value: 60: must be between 1 and 50"):
        from_args(args(write(tmp_path, "kind: Cluster\nnodes: 60\n")))
    with pytest.raises(ConfigError, match="zones: Invalid value: 30"):
        from_args(args(write(tmp_path, "kind: Cluster\nzones: 30\n")))
    with pytest.raises(ConfigError, match=r"nodeMonitorGracePeriod: Invalid value: 0\.0: must be greater than zero"):
        from_args(args(write(tmp_path, "kind: Cluster\nnodeMonitorGracePeriod: 0s\n")))
    # a flag that fixes the file's bad value wins
    assert from_args(args(write(tmp_path, "kind: Cluster\nnodes: 60\n"), nodes=2)).nodes == 2
