"""MetalLB kinds: CRD defaults, schema and webhook messages, printer rows."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import yaml

from kubewire.api import metallb
from kubewire.api.fields import FieldError
from kubewire.api.registry import Kind

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
NOT_CHECKED = (
    "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)

# From the MetalLB docs (configuration, Layer 2 configuration).
L2_POOL = """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: first-pool
  namespace: metallb-system
spec:
  addresses:
  - 192.168.1.240-192.168.1.250
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: example
  namespace: metallb-system
"""

BGP_PEER = """
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata:
  name: sample
  namespace: metallb-system
spec:
  myASN: 64500
  peerASN: 64501
  peerAddress: 10.0.0.1
"""


def load(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def pool(*addresses: str) -> dict[str, Any]:
    obj = load(L2_POOL)[0]
    obj["spec"]["addresses"] = list(addresses)
    return obj


def peer(**spec: Any) -> dict[str, Any]:
    obj = load(BGP_PEER)[0]
    obj["spec"].update(spec)
    return {**obj, "spec": {k: v for k, v in obj["spec"].items() if v is not None}}


def messages(errs: list[FieldError]) -> list[str]:
    return [str(e) for e in errs]


def check(kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    kind.default(obj)
    return messages(kind.validate(obj, old))


def test_kinds() -> None:
    assert {(k.kind, k.version, k.plural) for k in metallb.KINDS} == {
        ("IPAddressPool", "v1beta1", "ipaddresspools"),
        ("L2Advertisement", "v1beta1", "l2advertisements"),
        ("BGPAdvertisement", "v1beta1", "bgpadvertisements"),
        ("BGPPeer", "v1beta2", "bgppeers"),
    }
    assert all(k.namespaced and k.group == "metallb.io" and not k.merge_keys for k in metallb.KINDS)


def test_docs_l2_pool_defaults_and_rows() -> None:
    ipool, adv = load(L2_POOL)
    assert check(metallb.IP_ADDRESS_POOL, ipool) == []
    assert check(metallb.L2_ADVERTISEMENT, adv) == []
    assert ipool["spec"] == {"addresses": ["192.168.1.240-192.168.1.250"], "autoAssign": True, "avoidBuggyIPs": False}
    assert metallb.ip_address_pool_row(ipool, NOW) == ["first-pool", True, False, '["192.168.1.240-192.168.1.250"]']
    assert metallb.l2_advertisement_row(adv, NOW) == ["example", None, None, None, None]
    assert [c.name for c in metallb.IP_ADDRESS_POOL.columns] == ["Name", "Auto Assign", "Avoid Buggy IPs", "Addresses"]
    assert [(c.name, c.priority) for c in metallb.L2_ADVERTISEMENT.columns][1:] == [
        ("IPAddressPools", 0),
        ("IPAddressPool Selectors", 0),
        ("Interfaces", 0),
        ("Node Selectors", 10),
    ]


def test_pool_address_errors_use_metallb_wording() -> None:
    assert check(metallb.IP_ADDRESS_POOL, pool("10.0.0.0/33")) == [
        'spec.addresses[0]: Invalid value: "10.0.0.0/33": parsing address pool first-pool: invalid CIDR '
        '"10.0.0.0/33" in pool "first-pool": invalid CIDR "10.0.0.0/33"'
    ]
    assert check(metallb.IP_ADDRESS_POOL, pool("10.0.0.9-10.0.0.1")) == [
        'spec.addresses[0]: Invalid value: "10.0.0.9-10.0.0.1": parsing address pool first-pool: invalid CIDR '
        '"10.0.0.9-10.0.0.1" in pool "first-pool": invalid IP range "10.0.0.9-10.0.0.1": start IP "10.0.0.9" '
        'is after the end IP "10.0.0.1"'
    ]
    assert check(metallb.IP_ADDRESS_POOL, pool("10.0.0.1-banana"))[0].endswith(
        'invalid IP range "10.0.0.1-banana": invalid end IP "banana"'
    )
    assert check(metallb.IP_ADDRESS_POOL, pool()) == [
        "spec.addresses: Invalid value: []string{}: parsing address pool first-pool: pool has no prefixes defined"
    ]


def test_pool_overlaps_within_the_pool() -> None:
    assert check(metallb.IP_ADDRESS_POOL, pool("192.168.1.0/24", "192.168.1.128-192.168.1.130")) == [
        'spec.addresses[1]: Invalid value: "192.168.1.128-192.168.1.130": CIDR "192.168.1.128/31" in pool '
        '"first-pool" overlaps with already defined CIDR "192.168.1.0/24"'
    ]
    assert check(metallb.IP_ADDRESS_POOL, pool("192.168.1.0/25", "192.168.1.128/25", "fd00::/120")) == []


def test_pool_schema() -> None:
    obj = load(L2_POOL)[0]
    del obj["spec"]["addresses"]
    obj["spec"]["autoAssign"] = "yes"
    assert check(metallb.IP_ADDRESS_POOL, obj) == [
        "spec.addresses: Required value",
        'spec.autoAssign: Invalid value: "string": spec.autoAssign in body must be of type boolean: "string"',
        NOT_CHECKED,
    ]


def test_bgp_peer_defaults_row_and_webhook() -> None:
    obj = peer()
    assert check(metallb.BGP_PEER, obj) == []
    assert obj["spec"]["peerPort"] == 179 and obj["spec"]["disableMP"] is False
    assert metallb.bgp_peer_row(obj, NOW) == ["sample", "10.0.0.1", "64501", None, None]
    obj["spec"]["ebgpMultiHop"] = True
    obj["spec"]["bfdProfile"] = "full"
    assert metallb.bgp_peer_row(obj, NOW)[3:] == ["full", "true"]
    assert check(metallb.BGP_PEER, peer(myASN=None)) == ["spec.myASN: Required value", NOT_CHECKED]
    assert check(metallb.BGP_PEER, peer(peerASN=None)) == [
        "spec.peerASN: Invalid value: null: parsing peer sample missing peer ASN and dynamicASN"
    ]
    assert check(metallb.BGP_PEER, peer(peerAddress="10.0.0.300")) == [
        'spec.peerAddress: Invalid value: "10.0.0.300": parsing peer sample invalid BGPPeer address "10.0.0.300"'
    ]
    assert check(metallb.BGP_PEER, peer(peerPort=0)) == [
        "spec.peerPort: Invalid value: 0: spec.peerPort in body should be greater than or equal to 1"
    ]


def test_bgp_peer_graceful_restart_is_immutable() -> None:
    old = peer(enableGracefulRestart=True)
    new = copy.deepcopy(old)
    new["spec"]["enableGracefulRestart"] = False
    assert check(metallb.BGP_PEER, new, old=old) == [
        'spec.enableGracefulRestart: Invalid value: "boolean": EnableGracefulRestart cannot be changed after creation'
    ]


def test_bgp_advertisement() -> None:
    adv: dict[str, Any] = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "BGPAdvertisement",
        "metadata": {"name": "local", "namespace": "metallb-system"},
        "spec": {"ipAddressPools": ["bgp-pool"], "peers": ["sample"]},
    }
    assert check(metallb.BGP_ADVERTISEMENT, adv) == []
    assert adv["spec"]["aggregationLength"] == 32 and adv["spec"]["aggregationLengthV6"] == 128
    assert metallb.bgp_advertisement_row(adv, NOW) == ["local", '["bgp-pool"]', None, '["sample"]', None]
    adv["spec"]["aggregationLength"] = 33
    assert check(metallb.BGP_ADVERTISEMENT, adv) == [
        "spec.aggregationLength: Invalid value: 33: invalid aggregation length 33 for IPv4"
    ]
    adv["spec"]["aggregationLength"] = 0
    assert check(metallb.BGP_ADVERTISEMENT, adv) == [
        "spec.aggregationLength: Invalid value: 0: spec.aggregationLength in body should be greater than or equal to 1"
    ]
