"""Cluster DNS for real: the ``coredns`` add-on's pods answering pods over the pod network.

One dual-stack cluster of two nodes for the module; each test works in its own namespace.  Queries
are real: ``dig`` and the pods' own resolvers (glibc, busybox, Python) from busybox pods, and, for
exact structured answers, dnspython run by this venv's interpreter inside a pod (pods see the
machine's files).  Expected answers are CoreDNS's (``plugin/kubernetes``, ``plugin/backend_lookup.go``,
``plugin/cache``, ``plugin/forward``) under the Corefile ``kubewire up`` installs (kubeadm's, with the
kubernetes plugin's default TTL of 5 s).  Needs root, iproute2, nftables, kubectl and dig.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.reversename
import pytest

from kubewire.api import addons
from tests.conftest import Cluster, start_cluster, wait_for
from tests.system.helpers import (
    AGNHOST,
    NETEXEC,
    apply,
    backends,
    get,
    kexec,
    namespace_fixture,
    nodes,
    pod,
    ready_pod,
    rt_cmd,
    service,
)

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and nftables need root"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nftables is not installed"),
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
    pytest.mark.skipif(shutil.which("dig") is None, reason="dig (dnsutils) is not installed"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed"),
]
DNS_IP, DNS_IP6 = "10.96.0.10", "fd00:10:96::a"
ZONE = "cluster.local"
TTL = 5  # the kubernetes plugin's default TTL (the add-on's Corefile sets none)
# A client pod's name: not "client", which `kubewire exec` reserves for the client namespace.
CLIENT = "dnsclient"
PY = sys.executable  # has dnspython; pods run the machine's programs, so it runs in pods too
SOA_DATA = re.compile(rf"ns\.dns\.{re.escape(ZONE)}\. hostmaster\.{re.escape(ZONE)}\. \d+ 7200 1800 86400 {TTL}")
# What the ConfigMap holds: the add-on's Corefile (kubeadm's without `ttl 30`), for this zone.
COREFILE = addons.COREFILE % {"domain": ZONE}


@pytest.fixture(scope="module")
def dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(
        tmp_path_factory.mktemp("dns"), f"kwdns{os.getpid() % 100000}", ("--nodes", "2", "--ip-family", "dual")
    )
    try:
        wait_for("the cluster DNS ready", lambda: dns_pods(c) if len(dns_pods(c)) == 2 else None, timeout=60)
        yield c
    finally:
        c.kubewire("down", check=False)


ns = namespace_fixture("dc")


# --- queries --------------------------------------------------------------------------------------

Record = tuple[str, int, str, str]  # owner, TTL, type, rdata: as dnspython prints them


@dataclass(frozen=True)
class Reply:
    """One DNS reply, its sections sorted (the ``loadbalance`` plugin shuffles address records)."""

    error: str = ""  # the client gave up (timeout, refused): no reply
    rcode: str = ""
    flags: tuple[str, ...] = ()
    question: tuple[str, ...] = ()
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()

    def data(self, rdtype: str) -> list[str]:
        return sorted(r[3] for r in self.answer if r[2] == rdtype)


ASK = r"""
import json, sys
import dns.exception, dns.flags, dns.message, dns.query, dns.rcode, dns.rdatatype

def records(section):
    return sorted([rrset.name.to_text(), rrset.ttl, dns.rdatatype.to_text(rrset.rdtype), rd.to_text()]
                  for rrset in section for rd in rrset)

out = []
for name, rdtype, server, tcp in json.loads(sys.argv[1]):
    query = dns.message.make_query(name, rdtype)
    try:
        r = (dns.query.tcp if tcp else dns.query.udp)(query, server, timeout=4)
    except (dns.exception.DNSException, OSError) as e:
        out.append({"error": f"{type(e).__name__}: {e}"})
        continue
    out.append({
        "rcode": dns.rcode.to_text(r.rcode()),
        "flags": dns.flags.to_text(r.flags).lower().split(),
        "question": [q.to_text() for q in r.question],
        "answer": records(r.answer),
        "authority": records(r.authority),
        "additional": records(r.additional),
    })
print(json.dumps(out))
"""


def ask_many(
    c: Cluster, ns: str, queries: list[tuple[str, str]], server: str = DNS_IP, tcp: bool = False, client: str = CLIENT
) -> list[Reply]:
    """Each (name, type) asked of ``server`` from the ``client`` pod with dnspython (one exec)."""
    spec = json.dumps([[name, rdtype, server, tcp] for name, rdtype in queries])
    out = json.loads(kexec(c, client, PY, "-c", ASK, spec, ns=ns, timeout=20 + 5 * len(queries)))
    return [
        Reply(
            r.get("error", ""),
            r.get("rcode", ""),
            tuple(r.get("flags", [])),
            tuple(r.get("question", [])),
            *(tuple(tuple(x) for x in r.get(s, [])) for s in ("answer", "authority", "additional")),
        )
        for r in out
    ]


def ask(
    c: Cluster, ns: str, name: str, rdtype: str = "A", server: str = DNS_IP, tcp: bool = False, client: str = CLIENT
) -> Reply:
    return ask_many(c, ns, [(name, rdtype)], server, tcp, client)[0]


def rr(owner: str, rdtype: str, data: str, ttl: int = TTL) -> Record:
    return (owner, ttl, rdtype, data)


def fqdn(*labels: str) -> str:
    return ".".join((*labels, "svc", ZONE)) + "."


def assert_negative(r: Reply, rcode: str) -> None:
    """NXDOMAIN or NODATA as CoreDNS answers them: authoritative, no answer, the zone's SOA as authority."""
    assert r.rcode == rcode and "aa" in r.flags and r.answer == (), r
    ((owner, ttl, rdtype, data),) = r.authority
    assert (owner, ttl, rdtype) == (f"{ZONE}.", TTL, "SOA") and SOA_DATA.fullmatch(data), r


def answered(c: Cluster, ns: str, name: str, rdtype: str = "A", server: str = DNS_IP) -> Reply | None:
    r = ask(c, ns, name, rdtype, server)
    return r if r.rcode == "NOERROR" and r.answer else None


def rcode_is(c: Cluster, ns: str, name: str, rcode: str, server: str = DNS_IP) -> bool:
    return ask(c, ns, name, server=server).rcode == rcode


@dataclass(frozen=True)
class Dig:
    status: str
    flags: tuple[str, ...]
    answer: list[tuple[str, ...]]
    server: str


def dig(c: Cluster, ns: str, *args: str, client: str = CLIENT) -> Dig:
    out = kexec(c, client, "dig", "+noall", "+comments", "+answer", "+stats", *args, ns=ns)
    status = re.search(r"->>HEADER<<- opcode: QUERY, status: (\w+),", out)
    flags = re.search(r"^;; flags: ([a-z ]*);", out, re.M)
    server = re.search(r"^;; SERVER: (.*)$", out, re.M)
    assert status and flags and server, out
    answer = [tuple(line.split()) for line in out.splitlines() if line.strip() and not line.startswith(";")]
    return Dig(status[1], tuple(flags[1].split()), sorted(answer), server[1])


# --- objects --------------------------------------------------------------------------------------


def client(c: Cluster, ns: str, node: str = "", name: str = CLIENT) -> dict[str, Any]:
    """A busybox pod to run dig, the resolvers and Python from."""
    apply(c, ns, pod(name, "busybox", node, container={"command": ["sleep", "3600"]}))
    return ready_pod(c, ns, name)


def headless(c: Cluster, ns: str, name: str, app: str) -> dict[str, Any]:
    return service(c, ns, name, app, clusterIP="None", ipFamilyPolicy="RequireDualStack")


def ips(obj: dict[str, Any], family: int) -> list[str]:
    """A pod's addresses (status.podIPs) or a Service's ClusterIPs of one family."""
    raw = [p["ip"] for p in obj["status"].get("podIPs") or []] if obj["kind"] == "Pod" else obj["spec"]["clusterIPs"]
    return sorted(ip for ip in raw if (":" in ip) == (family == 6))


def ready_endpoints(c: Cluster, ns: str, svc: str, ready: int, total: int | None = None) -> list[dict[str, Any]]:
    """Wait until each address family's slices of ``svc`` list ``ready`` ready endpoints (``total`` in all)."""

    def check() -> list[dict[str, Any]] | None:
        slices = get(c, "-n", ns, "endpointslices", "-l", f"kubernetes.io/service-name={svc}")["items"]
        by_family: dict[str, list[dict[str, Any]]] = {}
        for s in slices:
            by_family.setdefault(s["addressType"], []).extend(s.get("endpoints") or [])
        counts = [
            (sum(bool((e.get("conditions") or {}).get("ready")) for e in eps), len(eps)) for eps in by_family.values()
        ]
        want = (ready, ready if total is None else total)
        return [e for eps in by_family.values() for e in eps] if counts and all(n == want for n in counts) else None

    return wait_for(f"{ready} ready endpoints of {svc}", check)


def dns_pods(c: Cluster) -> list[dict[str, Any]]:
    """The DNS pods that are Ready, by name."""
    items = get(c, "-n", "kube-system", "pods", "-l", "k8s-app=kube-dns")["items"]
    ready = [
        p
        for p in items
        if not p["metadata"].get("deletionTimestamp")
        and any(x["type"] == "Ready" and x["status"] == "True" for x in p["status"].get("conditions") or [])
    ]
    return sorted(ready, key=lambda p: str(p["metadata"]["name"]))


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        m = re.fullmatch(r"([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)", line.strip())
        if m and m[1] == name and labels.items() <= dict(re.findall(r'(\w+)="([^"]*)"', m[2] or "")).items():
            total += float(m[3])
    return total


def scrape(c: Cluster, ns: str, pod_ip: str) -> str:
    return kexec(c, CLIENT, "curl", "-sS", "--max-time", "5", f"http://{pod_ip}:9153/metrics", ns=ns)


# --- 1. the add-on --------------------------------------------------------------------------------


def test_addon_objects_as_kubeadm_makes_them(dc: Cluster) -> None:
    deploy = get(dc, "-n", "kube-system", "deployment", "coredns")
    assert deploy["spec"]["replicas"] == 2
    wait_for(
        "coredns 2/2 ready",
        lambda: get(dc, "-n", "kube-system", "deployment", "coredns")["status"].get("readyReplicas") == 2,
    )
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("registry.k8s.io/coredns/coredns:")
    assert container["args"] == ["-conf", "/etc/coredns/Corefile"]
    assert deploy["spec"]["selector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert deploy["spec"]["template"]["spec"]["dnsPolicy"] == "Default"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["readinessProbe"]["httpGet"]["port"] == 8181
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["port"] == 8080
    pods = dns_pods(dc)
    assert len(pods) == 2 and all(p["metadata"]["name"].startswith("coredns-") for p in pods)

    svc = get(dc, "-n", "kube-system", "service", "kube-dns")
    assert svc["spec"]["clusterIP"] == DNS_IP
    assert svc["spec"]["clusterIPs"] == [DNS_IP, DNS_IP6]
    assert svc["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    assert svc["spec"]["selector"] == {"k8s-app": "kube-dns"}
    ports = [(p["name"], p["port"], p["protocol"], p["targetPort"]) for p in svc["spec"]["ports"]]
    assert ports == [("dns", 53, "UDP", 53), ("dns-tcp", 53, "TCP", 53), ("metrics", 9153, "TCP", 9153)]
    # Both DNS pods are the Service's ready endpoints, in each family.
    eps = ready_endpoints(dc, "kube-system", "kube-dns", 2)
    want = {ip for p in pods for ip in ips(p, 4) + ips(p, 6)}
    assert {a for e in eps for a in e["addresses"]} == want

    corefile = get(dc, "-n", "kube-system", "configmap", "coredns")["data"]["Corefile"]
    assert corefile == COREFILE


# --- 2. ClusterIP Services ------------------------------------------------------------------------


def test_cluster_ip_a_and_aaaa_over_udp_and_tcp(dc: Cluster, ns: str) -> None:
    svc = service(dc, ns, "web", "web", ipFamilyPolicy="RequireDualStack")
    (v4,), (v6,) = ips(svc, 4), ips(svc, 6)
    client(dc, ns)
    name = fqdn("web", ns)
    wait_for("the A record", lambda: answered(dc, ns, name))
    for transport, label in (("+notcp", "UDP"), ("+tcp", "TCP")):
        for rdtype, ip in (("A", v4), ("AAAA", v6)):
            d = dig(dc, ns, transport, f"@{DNS_IP}", name, rdtype)
            assert (d.status, d.answer) == ("NOERROR", [(name, str(TTL), "IN", rdtype, ip)]), d
            assert "aa" in d.flags and d.server == f"{DNS_IP}#53({DNS_IP}) ({label})", d
    # The DNS Service's IPv6 address answers too, over both transports.
    for transport, label in (("+notcp", "UDP"), ("+tcp", "TCP")):
        d = dig(dc, ns, transport, f"@{DNS_IP6}", name, "AAAA")
        assert (d.status, d.answer) == ("NOERROR", [(name, str(TTL), "IN", "AAAA", v6)]), d
        assert d.server == f"{DNS_IP6}#53({DNS_IP6}) ({label})", d


# --- 3. headless Services -------------------------------------------------------------------------


def test_headless_service_answers_its_ready_endpoints(dc: Cluster, ns: str) -> None:
    a, b = nodes(dc)
    ready = backends(dc, ns, "hl", [a, b])
    # A selected pod that never becomes ready: an endpoint, but not published.
    never = pod(
        "hl-never",
        "busybox",
        a,
        container={
            "command": ["sleep", "3600"],
            "readinessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1},
        },
    )
    never["metadata"]["labels"] = {"app": "hl"}
    apply(dc, ns, never)
    # A pod with hostname + subdomain = the Service's name: its endpoint carries the hostname.
    named = pod("named", AGNHOST, b, container=NETEXEC, hostname="h1", subdomain="hl")
    named["metadata"]["labels"] = {"app": "hl"}
    apply(dc, ns, named)
    ready.append(ready_pod(dc, ns, "named"))
    headless(dc, ns, "hl", "hl")
    headless(dc, ns, "nobody", "nothing-matches")
    eps = ready_endpoints(dc, ns, "hl", 3, total=4)
    assert sorted(e.get("hostname", "") for e in eps) == ["", "", "", "", "", "", "h1", "h1"]
    client(dc, ns)
    name = fqdn("hl", ns)
    v4 = sorted(ip for p in ready for ip in ips(p, 4))
    v6 = sorted(ip for p in ready for ip in ips(p, 6))

    def all_three() -> Reply | None:
        r = ask(dc, ns, name)
        return r if len(r.answer) == 3 else None

    r = wait_for("three A records", all_three)
    assert r.rcode == "NOERROR" and "aa" in r.flags and r.answer == tuple(sorted(rr(name, "A", ip) for ip in v4)), r
    r = ask(dc, ns, name, "AAAA")
    assert r.rcode == "NOERROR" and r.answer == tuple(sorted(rr(name, "AAAA", ip) for ip in v6)), r

    named_ip4, named_ip6 = ips(ready[-1], 4), ips(ready[-1], 6)
    host = fqdn("h1", "hl", ns)
    assert ask(dc, ns, host).answer == (rr(host, "A", named_ip4[0]),)
    assert ask(dc, ns, host, "AAAA").answer == (rr(host, "AAAA", named_ip6[0]),)
    # Endpoints without a hostname answer under their dashed address.
    first = ips(ready[0], 4)[0]
    dashed = fqdn(first.replace(".", "-"), "hl", ns)
    assert ask(dc, ns, dashed).answer == (rr(dashed, "A", first),)
    # The not-ready pod's address is in no answer, not even under its own dashed name.
    (never_ip,) = ips(get(dc, "-n", ns, "pod", "hl-never"), 4)
    assert_negative(ask(dc, ns, fqdn(never_ip.replace(".", "-"), "hl", ns)), "NXDOMAIN")
    # No ready endpoint at all: NXDOMAIN, in both families.
    assert_negative(ask(dc, ns, fqdn("nobody", ns)), "NXDOMAIN")
    assert_negative(ask(dc, ns, fqdn("nobody", ns), "AAAA"), "NXDOMAIN")


# --- 4. SRV ---------------------------------------------------------------------------------------


def test_srv_for_named_ports(dc: Cluster, ns: str) -> None:
    a, b = nodes(dc)
    pods = backends(dc, ns, "hl", [a, b])
    svc = service(dc, ns, "web", "hl", ipFamilyPolicy="RequireDualStack")
    headless(dc, ns, "hl", "hl")
    ready_endpoints(dc, ns, "hl", 2)
    client(dc, ns)
    # ClusterIP: one SRV to the Service's name on the Service's port; both ClusterIPs count as
    # items for the weight (CoreDNS's plugin.SRV: 100 / 2 items * 100 = 50) and come as glue.
    web = fqdn("web", ns)
    owner = f"_http._tcp.{web}"
    r = wait_for("the SRV record", lambda: answered(dc, ns, owner, "SRV"))
    assert r.answer == (rr(owner, "SRV", f"0 50 80 {web}"),), r
    assert r.additional == tuple(sorted([rr(web, "A", ips(svc, 4)[0]), rr(web, "AAAA", ips(svc, 6)[0])])), r
    # Protocol and port name must match: _http._udp and _dns._tcp name nothing.
    assert_negative(ask(dc, ns, f"_http._udp.{web}", "SRV"), "NXDOMAIN")
    assert_negative(ask(dc, ns, f"_dns._tcp.{web}", "SRV"), "NXDOMAIN")
    # Headless: one SRV per endpoint (both families: 4 items, weight 25), the endpoint's port
    # (the targetPort, 8080), each target the endpoint's dashed address under the Service, and its
    # address as glue.  With this test's long namespace the glue may not fit in 512 bytes: over UDP
    # the answer section is whole, and TC is set when glue was left out (miekg/dns's Truncate);
    # over TCP everything comes.
    hl = fqdn("hl", ns)
    owner = f"_http._tcp.{hl}"
    targets = {ip: fqdn(ip.replace(".", "-").replace(":", "-"), "hl", ns) for p in pods for ip in ips(p, 4) + ips(p, 6)}
    srv = tuple(sorted(rr(owner, "SRV", f"0 25 8080 {t}") for t in targets.values()))
    glue = tuple(sorted(rr(t, "AAAA" if ":" in ip else "A", ip) for ip, t in targets.items()))
    r = ask(dc, ns, owner, "SRV")
    assert r.rcode == "NOERROR" and r.answer == srv, r
    assert r.additional == glue if "tc" not in r.flags else set(r.additional) < set(glue), r
    r = ask(dc, ns, owner, "SRV", tcp=True)
    assert r.rcode == "NOERROR" and "tc" not in r.flags and (r.answer, r.additional) == (srv, glue), r


# --- 5. PTR ---------------------------------------------------------------------------------------


def test_ptr_for_cluster_ips(dc: Cluster, ns: str) -> None:
    svc = service(dc, ns, "web", "web", ipFamilyPolicy="RequireDualStack")
    client(dc, ns)
    web = fqdn("web", ns)
    wait_for("the Service", lambda: answered(dc, ns, web))
    for ip in ips(svc, 4) + ips(svc, 6):
        owner = dns.reversename.from_address(ip).to_text()
        r = ask(dc, ns, owner, "PTR")
        assert r.rcode == "NOERROR" and "aa" in r.flags and r.answer == (rr(owner, "PTR", web),), r
    assert ips(svc, 6)[0].startswith("fd00:10:96:")
    assert owner.endswith(".6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa.")  # the nibble form of the IPv6 ClusterIP


# --- 6. ExternalName ------------------------------------------------------------------------------


def test_external_name_is_a_cname(dc: Cluster, ns: str) -> None:
    svc = service(dc, ns, "web", "web")
    apply(
        dc,
        ns,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "www.example.test"},
        },
    )
    inside = fqdn("web", ns)
    apply(
        dc,
        ns,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "alias"},
            "spec": {"type": "ExternalName", "externalName": inside.rstrip(".")},
        },
    )
    client(dc, ns)
    ext = fqdn("ext", ns)
    r = wait_for("the CNAME", lambda: answered(dc, ns, ext, "CNAME"))
    assert r.answer == (rr(ext, "CNAME", "www.example.test."),) and "aa" in r.flags, r
    # A target inside the cluster zone is followed there: the CNAME, then the target's address.
    alias = fqdn("alias", ns)
    r = wait_for("the in-zone chase", lambda: answered(dc, ns, alias))
    assert r.answer == tuple(sorted([rr(alias, "CNAME", inside), rr(inside, "A", ips(svc, 4)[0])])), r
    # An ExternalName Service has no SRV and no endpoint names.
    assert_negative(ask(dc, ns, f"_http._tcp.{ext}", "SRV"), "NOERROR")
    assert_negative(ask(dc, ns, fqdn("x", "ext", ns)), "NXDOMAIN")


# --- 7. StatefulSet pods --------------------------------------------------------------------------


def test_statefulset_pods_have_stable_names(dc: Cluster, ns: str) -> None:
    headless(dc, ns, "nginx", "sts")
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web"},
        "spec": {
            "serviceName": "nginx",
            "replicas": 2,
            "selector": {"matchLabels": {"app": "sts"}},
            "template": {
                "metadata": {"labels": {"app": "sts"}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{"name": "c", "image": AGNHOST, **NETEXEC}],
                },
            },
        },
    }
    apply(dc, ns, sts)
    pods = [ready_pod(dc, ns, f"web-{i}", timeout=60) for i in range(2)]
    eps = ready_endpoints(dc, ns, "nginx", 2)
    assert sorted(e.get("hostname", "") for e in eps) == ["web-0", "web-0", "web-1", "web-1"]
    client(dc, ns)
    for i, p in enumerate(pods):
        name = fqdn(f"web-{i}", "nginx", ns)
        r = wait_for(f"web-{i}'s name", functools.partial(answered, dc, ns, name))
        assert r.answer == (rr(name, "A", ips(p, 4)[0]),), r
        assert ask(dc, ns, name, "AAAA").answer == (rr(name, "AAAA", ips(p, 6)[0]),)
    # SRV targets are the pods' stable names, one per endpoint of each family.
    owner = f"_http._tcp.{fqdn('nginx', ns)}"
    r = ask(dc, ns, owner, "SRV", tcp=True)  # TCP: the glue may not fit in 512 bytes
    # Four items (two pods, two families): weight 25; one record per (target, port).
    assert r.answer == tuple(
        sorted(rr(owner, "SRV", f"0 25 8080 {fqdn(f'web-{i}', 'nginx', ns)}") for i in range(2))
    ), r
    glue = [
        rr(fqdn(f"web-{i}", "nginx", ns), t, ips(p, f)[0])
        for i, p in enumerate(pods)
        for t, f in (("A", 4), ("AAAA", 6))
    ]
    assert r.additional == tuple(sorted(glue)), r


# --- 8. the zone itself ---------------------------------------------------------------------------


def test_schema_version_soa_and_ns(dc: Cluster, ns: str) -> None:
    client(dc, ns)
    txt, soa, nsr = ask_many(dc, ns, [(f"dns-version.{ZONE}.", "TXT"), (f"{ZONE}.", "SOA"), (f"{ZONE}.", "NS")])
    assert txt.rcode == "NOERROR" and txt.answer == (rr(f"dns-version.{ZONE}.", "TXT", '"1.1.0"', 28800),), txt
    assert soa.rcode == "NOERROR" and "aa" in soa.flags and soa.authority == (), soa
    ((owner, ttl, rdtype, data),) = soa.answer
    assert (owner, ttl, rdtype) == (f"{ZONE}.", TTL, "SOA") and SOA_DATA.fullmatch(data), soa
    # NS: the DNS Service's name (CoreDNS finds its own pod among kube-dns's endpoints), with every
    # ClusterIP of it as glue (plugin/kubernetes/ns.go nsAddrs).
    target = fqdn("kube-dns", "kube-system")
    assert nsr.rcode == "NOERROR" and nsr.answer == (rr(f"{ZONE}.", "NS", target),), nsr
    assert nsr.additional == (rr(target, "A", DNS_IP), rr(target, "AAAA", DNS_IP6)), nsr
    # SOA below the apex is NODATA; TXT of another name too.
    assert_negative(ask(dc, ns, f"svc.{ZONE}.", "SOA"), "NOERROR")
    assert_negative(ask(dc, ns, f"other.{ZONE}.", "TXT"), "NOERROR")


# --- 9. NXDOMAIN versus NODATA --------------------------------------------------------------------


def test_nxdomain_versus_nodata(dc: Cluster, ns: str) -> None:
    svc = service(dc, ns, "four", "four", ipFamilies=["IPv4"], ipFamilyPolicy="SingleStack")
    assert svc["spec"]["clusterIPs"] == ips(svc, 4) and len(svc["spec"]["clusterIPs"]) == 1
    client(dc, ns)
    four = fqdn("four", ns)
    wait_for("the IPv4-only Service", lambda: answered(dc, ns, four))
    assert_negative(ask(dc, ns, fqdn("no-such-service", ns)), "NXDOMAIN")
    assert_negative(ask(dc, ns, fqdn("no-such-service", ns), "AAAA"), "NXDOMAIN")
    assert_negative(ask(dc, ns, fqdn("four", "no-such-namespace")), "NXDOMAIN")
    # The name exists (it has an A record): AAAA is NODATA, not NXDOMAIN.
    assert_negative(ask(dc, ns, four, "AAAA"), "NOERROR")
    # An existing namespace is a name too (NODATA); a type Kubernetes has no records of is NODATA
    # for an existing name and NXDOMAIN for a missing one.
    assert_negative(ask(dc, ns, f"{ns}.svc.{ZONE}."), "NOERROR")
    assert_negative(ask(dc, ns, four, "MX"), "NOERROR")
    assert_negative(ask(dc, ns, fqdn("no-such-service", ns), "MX"), "NXDOMAIN")


# --- 10. case ---------------------------------------------------------------------------------------


def test_names_are_case_insensitive_and_echoed(dc: Cluster, ns: str) -> None:
    svc = service(dc, ns, "web", "web")
    client(dc, ns)
    wait_for("the Service", lambda: answered(dc, ns, fqdn("web", ns)))
    mixed = "".join(ch.upper() if i % 2 else ch for i, ch in enumerate(ns))
    name = f"WeB.{mixed}.SvC.ClUsTeR.LoCaL."
    r = ask(dc, ns, name)
    # The answer's owner and the question keep the case the client sent (0x20-style clients check it).
    assert r.rcode == "NOERROR" and r.answer == (rr(name, "A", ips(svc, 4)[0]),), r
    assert r.question == (f"{name} IN A",), r
    d = dig(dc, ns, f"@{DNS_IP}", name)
    assert d.status == "NOERROR" and d.answer == [(name, str(TTL), "IN", "A", ips(svc, 4)[0])], d


# --- 11. the pods' own resolvers -------------------------------------------------------------------


GETADDRINFO = """
import socket, sys
print(" ".join(sorted({a[4][0] for a in socket.getaddrinfo(sys.argv[1], 80, proto=socket.IPPROTO_TCP)})))
"""


def nslookup_addresses(out: str) -> tuple[set[str], set[str]]:
    """busybox nslookup's output: the names it found and their addresses."""
    names = set(re.findall(r"^Name:\s+(\S+)$", out, re.M))
    addresses = set(re.findall(r"^Address: (\S+)$", out, re.M))
    return names, addresses


def test_pods_resolve_with_their_own_resolvers(dc: Cluster, ns: str) -> None:
    svc = service(dc, ns, "web", "web", ipFamilyPolicy="RequireDualStack")
    (v4,), (v6,) = ips(svc, 4), ips(svc, 6)
    c = client(dc, ns)
    assert c["spec"]["dnsPolicy"] == "ClusterFirst"
    resolv = kexec(dc, CLIENT, "cat", "/etc/resolv.conf", ns=ns)
    assert resolv.split("\n")[:3] == [
        f"search {ns}.svc.{ZONE} svc.{ZONE} {ZONE}",
        f"nameserver {DNS_IP}",
        "options ndots:5",
    ]
    full = fqdn("web", ns).rstrip(".")
    wait_for("the Service", lambda: answered(dc, ns, full + "."))
    # glibc (getent): the search path completes a bare name and <svc>.<ns>; hosts prefers IPv6.
    assert kexec(dc, CLIENT, "getent", "hosts", "web", ns=ns).split() == [v6, full]
    assert kexec(dc, CLIENT, "getent", "hosts", f"web.{ns}", ns=ns).split() == [v6, full]
    v4_lines = kexec(dc, CLIENT, "getent", "ahostsv4", "web", ns=ns).split("\n")
    assert v4_lines[0].split() == [v4, "STREAM", full]
    # busybox nslookup: a bare name goes through the search path, and a fully qualified one as is.
    # (busybox >= 1.29 sends a name with a dot as it is, without the search path: `nslookup web.<ns>`
    # asks for the name "web.<ns>." upstream, in any cluster.  Not a DNS server matter.)
    for name in ("web", full):
        proc = subprocess.run(
            [*rt_cmd(dc), "exec", "-n", ns, CLIENT, "--", "busybox", "nslookup", name],
            env=dc.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        found, addresses = nslookup_addresses(proc.stdout)
        assert found == {full} and addresses == {v4, v6}, proc.stdout
    # Python (getaddrinfo through glibc).
    assert kexec(dc, CLIENT, PY, "-c", GETADDRINFO, "web", ns=ns).split() == sorted([v4, v6])


# --- 12. API changes --------------------------------------------------------------------------------


def test_api_changes_show_in_answers(dc: Cluster, ns: str) -> None:
    client(dc, ns)
    name = fqdn("late", ns)
    assert_negative(ask(dc, ns, name), "NXDOMAIN")
    start = time.monotonic()
    svc = service(dc, ns, "late", "late")
    r = wait_for("the new Service's A record", lambda: answered(dc, ns, name))
    took = time.monotonic() - start
    assert r.answer == (rr(name, "A", ips(svc, 4)[0]),), f"{r} (visible {took:.2f} s after the create)"
    # Every DNS pod has it (the ClusterIP may have picked either).
    for p in dns_pods(dc):
        assert ask(dc, ns, name, server=ips(p, 4)[0]).answer == r.answer, p["metadata"]["name"]
    dc.kubectl("delete", "svc", "-n", ns, "late")
    start = time.monotonic()
    for p in dns_pods(dc):
        server = ips(p, 4)[0]
        wait_for(f"NXDOMAIN from {server}", functools.partial(rcode_is, dc, ns, name, "NXDOMAIN", server))
    took = time.monotonic() - start
    r = ask(dc, ns, name)
    assert r.rcode == "NXDOMAIN", f"{r} (NXDOMAIN from every DNS pod {took:.2f} s after the delete)"
    assert_negative(r, "NXDOMAIN")


# --- 13. forwarding ----------------------------------------------------------------------------------


UPSTREAM = r"""
import socketserver, threading
import dns.flags, dns.message, dns.name, dns.rcode, dns.rdatatype, dns.rrset

SOA = dns.rrset.from_text("test.", 60, "IN", "SOA", "ns.test. hostmaster.test. 1 7200 1800 86400 60")

def reply(data):
    query = dns.message.from_wire(data)
    r = dns.message.make_response(query)
    r.flags |= dns.flags.AA | dns.flags.RA
    q = query.question[0]
    if q.name == dns.name.from_text("fail.test."):
        r.set_rcode(dns.rcode.SERVFAIL)
    elif q.name == dns.name.from_text("example.test.") or q.name.is_subdomain(dns.name.from_text("probe.test.")):
        if q.rdtype == dns.rdatatype.A:
            ip = "192.0.2.1" if q.name == dns.name.from_text("example.test.") else "192.0.2.2"
            r.answer.append(dns.rrset.from_text(q.name, 60, "IN", "A", ip))
        else:
            r.authority.append(SOA)
    else:
        r.set_rcode(dns.rcode.NXDOMAIN)
        r.authority.append(SOA)
    return r.to_wire()

class Udp(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(reply(data), self.client_address)

class Tcp(socketserver.StreamRequestHandler):
    def handle(self):
        while len(head := self.rfile.read(2)) == 2:
            out = reply(self.rfile.read(int.from_bytes(head, "big")))
            self.wfile.write(len(out).to_bytes(2, "big") + out)

for server in (socketserver.ThreadingUDPServer, socketserver.ThreadingTCPServer):
    server.allow_reuse_address = True
    server.daemon_threads = True
tcp = socketserver.ThreadingTCPServer(("0.0.0.0", 53), Tcp)
threading.Thread(target=tcp.serve_forever, daemon=True).start()
socketserver.ThreadingUDPServer(("0.0.0.0", 53), Udp).serve_forever()
"""


def upstream(c: Cluster, ns: str) -> str:
    """A pod answering for ``test.``: example.test A 192.0.2.1, *.probe.test A 192.0.2.2, SERVFAIL for
    fail.test and NXDOMAIN for other names; its IPv4 address, once it answers."""
    apply(c, ns, pod("upstream", "busybox", container={"command": [PY, "-c", UPSTREAM]}))
    (ip,) = ips(ready_pod(c, ns, "upstream"), 4)
    wait_for("the upstream server", lambda: answered(c, ns, "example.test.", server=ip))
    return ip


def set_corefile(c: Cluster, text: str) -> None:
    patch = {"data": {"Corefile": text}}
    c.kubectl("patch", "configmap", "coredns", "-n", "kube-system", "--type=merge", "-p", json.dumps(patch))


def not_ours(c: Cluster, ns: str, server: str) -> bool:
    """Whether ``server`` no longer forwards to the test's upstream (a fresh name, so no cache)."""
    r = ask(c, ns, f"{uuid.uuid4().hex}.probe.test.", server=server)
    return r.data("A") != ["192.0.2.2"]


@contextlib.contextmanager
def forwarding_to(c: Cluster, ns: str, ip: str) -> Iterator[list[str]]:
    """The add-on's Corefile with ``forward . IP`` for ``forward . /etc/resolv.conf`` while inside;
    yields the DNS pods' IPv4 addresses, each serving the new Corefile.  The original comes back at
    the end, and is waited for."""
    original = get(c, "-n", "kube-system", "configmap", "coredns")["data"]["Corefile"]
    assert "forward . /etc/resolv.conf {" in original
    set_corefile(c, original.replace("forward . /etc/resolv.conf {", f"forward . {ip} {{"))
    servers = [ips(p, 4)[0] for p in dns_pods(c)]
    try:
        for server in servers:
            wait_for(f"{server} to reload", functools.partial(answered, c, ns, "example.test.", server=server))
        yield servers
    finally:
        set_corefile(c, original)
        for server in servers:
            wait_for(f"{server} back on its own Corefile", functools.partial(not_ours, c, ns, server), timeout=60)


def test_forwarding_to_an_upstream_with_cache(dc: Cluster, ns: str) -> None:
    client(dc, ns)
    ip = upstream(dc, ns)
    with forwarding_to(dc, ns, ip) as servers:
        # From a client pod, through the DNS Service.
        r = wait_for("example.test through kube-dns", lambda: answered(dc, ns, "example.test."))
        assert r.data("A") == ["192.0.2.1"], r
        # A repeated question is a cache hit on the pod that answers it.
        server = servers[0]
        ask(dc, ns, "example.test.", server=server)
        hits = metric(scrape(dc, ns, server), "coredns_cache_hits_total", type="success")
        r = ask(dc, ns, "example.test.", server=server)
        assert r.rcode == "NOERROR" and r.data("A") == ["192.0.2.1"], r
        assert metric(scrape(dc, ns, server), "coredns_cache_hits_total", type="success") == hits + 1
        # The upstream's NXDOMAIN comes through as NXDOMAIN, with the upstream's SOA.
        r = ask(dc, ns, "nope.test.", server=server)
        soa = ("test.", "SOA", "ns.test. hostmaster.test. 1 7200 1800 86400 60")
        assert r.rcode == "NXDOMAIN" and r.answer == (), r
        assert [(owner, t, data) for owner, _, t, data in r.authority] == [soa], r
        # Over TCP as well.
        r = ask(dc, ns, "example.test.", server=server, tcp=True)
        assert r.rcode == "NOERROR" and r.data("A") == ["192.0.2.1"], r
        assert metric(scrape(dc, ns, server), "coredns_forward_requests_total", to=f"{ip}:53") >= 1


def test_forwarded_answers_ttls_are_capped_by_the_cache(dc: Cluster, ns: str) -> None:
    """``cache 30`` caps the TTLs of what it passes on, the first answer included (plugin/cache
    cache.go ResponseWriter.WriteMsg: "Apply capped TTL to this reply"); the upstream says 60."""
    client(dc, ns)
    ip = upstream(dc, ns)
    with forwarding_to(dc, ns, ip) as servers:
        server = servers[0]
        fresh = f"{uuid.uuid4().hex}.probe.test."
        first, second = ask(dc, ns, fresh, server=server), ask(dc, ns, fresh, server=server)
        missing = ask(dc, ns, f"{uuid.uuid4().hex}.test.", server=server)
    assert first.answer == (rr(fresh, "A", "192.0.2.2", 30),), first
    assert second.rcode == "NOERROR" and second.answer[0][1] <= 30, second
    assert missing.rcode == "NXDOMAIN" and [x[1] for x in missing.authority] == [30], missing


def external_names(c: Cluster, ns: str, targets: dict[str, str]) -> None:
    for name, target in targets.items():
        spec = {"type": "ExternalName", "externalName": target}
        apply(c, ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})


def test_external_name_chased_through_the_upstream(dc: Cluster, ns: str) -> None:
    """An ExternalName target outside the zone is resolved through the server itself (CoreDNS's
    upstream.Lookup), so it reaches the forwarder: the CNAME, then the upstream's answer section;
    an upstream NXDOMAIN leaves the CNAME alone, NOERROR (plugin/backend_lookup.go A())."""
    client(dc, ns)
    ip = upstream(dc, ns)
    external_names(dc, ns, {"ext": "example.test", "gone": "nope.test"})
    with forwarding_to(dc, ns, ip):
        ext = fqdn("ext", ns)
        r = wait_for("the chased ExternalName", lambda: answered(dc, ns, ext))
        gone = ask(dc, ns, fqdn("gone", ns))
    # (the upstream record's TTL is the forwarder's business: see the cache TTL test)
    assert [x[0] + x[2] + x[3] for x in r.answer] == ["example.test.A192.0.2.1", f"{ext}CNAMEexample.test."], r
    assert rr(ext, "CNAME", "example.test.") in r.answer and "aa" in r.flags, r
    assert gone.rcode == "NOERROR" and gone.answer == (rr(fqdn("gone", ns), "CNAME", "nope.test."),), gone


def test_external_name_keeps_its_cname_when_the_upstream_fails(dc: Cluster, ns: str) -> None:
    """plugin/pkg/upstream/upstream.go Lookup returns the message the server wrote (here the
    upstream's SERVFAIL, which forward passes on) and a nil error, so plugin.A keeps the CNAME and
    appends the (empty) answer section: NOERROR, the CNAME alone."""
    client(dc, ns)
    ip = upstream(dc, ns)
    external_names(dc, ns, {"broken": "fail.test"})
    broken = fqdn("broken", ns)
    with forwarding_to(dc, ns, ip):
        assert ask(dc, ns, "fail.test.").rcode == "SERVFAIL"
        r = ask(dc, ns, broken)
    assert r.rcode == "NOERROR" and r.answer == (rr(broken, "CNAME", "fail.test."),), r


def test_metrics_survive_a_corefile_reload(dc: Cluster, ns: str) -> None:
    """CoreDNS's metrics are package-level Prometheus vectors (plugin/metrics/vars), registered once
    per process: a reload changes the plugins, not the counters."""
    client(dc, ns)
    ip = upstream(dc, ns)
    server = ips(dns_pods(dc)[0], 4)[0]
    for _ in range(3):
        ask(dc, ns, fqdn("kube-dns", "kube-system"), server=server)
    before = metric(scrape(dc, ns, server), "coredns_dns_requests_total")
    with forwarding_to(dc, ns, ip):
        after = metric(scrape(dc, ns, server), "coredns_dns_requests_total")
    assert before >= 3 and after >= before, (before, after)


# --- 14. operations -----------------------------------------------------------------------------------


def http(c: Cluster, ns: str, url: str) -> tuple[int, str]:
    out = kexec(c, CLIENT, "curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}", url, ns=ns)
    body, _, code = out.rpartition("\n")
    return int(code), body


def test_health_readiness_and_metrics_endpoints(dc: Cluster, ns: str) -> None:
    client(dc, ns)
    for p in dns_pods(dc):
        ip = ips(p, 4)[0]
        assert http(dc, ns, f"http://{ip}:8080/health") == (200, "OK")
        assert http(dc, ns, f"http://{ip}:8181/ready") == (200, "OK")
        # One A query over UDP to this pod, so that its counters have something in them.
        assert ask(dc, ns, fqdn("kube-dns", "kube-system"), server=ip).rcode == "NOERROR"
        code, text = http(dc, ns, f"http://{ip}:9153/metrics")
        assert code == 200
        for name in (
            "coredns_dns_requests_total",
            "coredns_dns_responses_total",
            "coredns_dns_request_duration_seconds_bucket",
            "coredns_cache_hits_total",
        ):
            assert re.search(rf"^{name}\{{", text, re.M), f"{name} missing from {p['metadata']['name']}'s metrics"
        assert metric(text, "coredns_dns_requests_total", proto="udp", type="A", zone=".") >= 1
        assert metric(text, "coredns_dns_responses_total", rcode="NOERROR") >= 1
        assert metric(text, "coredns_dns_request_duration_seconds_bucket", le="+Inf", type="A") >= 1


# --- 15. robustness -------------------------------------------------------------------------------------


SEND = r"""
import json, socket, sys
out = []
for payload in json.loads(sys.argv[2]):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.sendto(bytes.fromhex(payload), (sys.argv[1], 53))
    try:
        out.append(s.recv(65535).hex())
    except TimeoutError:
        out.append(None)
    s.close()
print(json.dumps(out))
"""


def header(reply: bytes) -> tuple[int, int, int, int]:
    """(id, flags, question count, rcode) of a reply."""
    qid, flags, qd = struct.unpack_from("!HHH", reply)
    return qid, flags, qd, flags & 0xF


def test_garbage_is_dropped_or_refused_and_the_server_carries_on(dc: Cluster, ns: str) -> None:
    client(dc, ns)
    p = dns_pods(dc)[0]
    server = ips(p, 4)[0]
    good = dns.message.make_query(fqdn("kube-dns", "kube-system"), "A")
    good.id = 0x4242
    wire = good.to_wire()
    rng = random.Random(20240611)
    noise = [rng.randbytes(n) for n in (1, 7, 12, 40, 300)]
    qr_set = wire[:2] + struct.pack("!H", struct.unpack_from("!H", wire, 2)[0] | 0x8000) + wire[4:]
    update = wire[:2] + struct.pack("!H", 5 << 11 | 0x0100) + wire[4:]  # opcode UPDATE, RD
    question = wire[12:]
    two = wire[:4] + struct.pack("!H", 2) + wire[6:] + question  # QDCOUNT 2, two questions
    cases = [*noise, wire[:11], qr_set, update, two, wire]
    out = json.loads(kexec(dc, CLIENT, PY, "-c", SEND, server, json.dumps([x.hex() for x in cases]), ns=ns, timeout=60))
    replies = [bytes.fromhex(x) if x is not None else None for x in out]
    *noisy, short, to_qr, to_update, to_two, to_good = replies
    for sent, got in zip(noise, noisy, strict=True):
        # Too short to have a header, or a response: dropped.  Otherwise an error on the request's id.
        if len(sent) < 12 or sent[2] & 0x80:
            assert got is None, (sent.hex(), got)
        elif got is not None:
            assert got[:2] == sent[:2] and got[2] & 0x80 and header(got)[3] in (1, 4), (sent.hex(), got.hex())
    assert short is None  # a truncated header: no id to answer
    assert to_qr is None  # a response is never answered (no loops, no amplification)
    # opcode UPDATE: NOTIMP on the request's own header (opcode and RD kept, no question), as miekg/dns.
    assert to_update is not None and header(to_update) == (0x4242, 0x8000 | 5 << 11 | 0x0100 | 4, 0, 4), to_update
    # Two questions: FORMERR (miekg/dns's default MsgAcceptFunc wants exactly one).
    assert to_two is not None, "no FORMERR for two questions"
    qid, flags, _, rcode = header(to_two)
    assert (qid, flags & 0x8000, rcode) == (0x4242, 0x8000, 1), to_two
    assert to_good is not None
    answer = dns.message.from_wire(to_good)
    assert (
        answer.id == 0x4242 and answer.rcode() == 0 and [rd.to_text() for rs in answer.answer for rd in rs] == [DNS_IP]
    )
    # And the server is unharmed: no handler crashed, and it still answers through the Service.
    assert metric(scrape(dc, ns, server), "coredns_panics_total") == 0
    assert answered(dc, ns, fqdn("kube-dns", "kube-system"), server=server)


# --- 16. a DNS pod restart ------------------------------------------------------------------------------


LOOP = r"""
import json, os, sys, time
import dns.exception, dns.message, dns.query
name, server, stop = sys.argv[1:4]
total, retries, failures = 0, 0, []
print("started", flush=True)
while not os.path.exists(stop):
    total += 1
    for attempt in range(3):  # a 1 s timeout and two retries, as a stub resolver does
        try:
            r = dns.query.udp(dns.message.make_query(name, "A"), server, timeout=1.0)
            if r.rcode() == 0 and r.answer:
                break
            error = f"rcode {r.rcode()}"
        except (dns.exception.DNSException, OSError) as e:
            error = type(e).__name__
        retries += 1
    else:
        failures.append([total, error])
    time.sleep(0.02)
print(json.dumps({"total": total, "retries": retries, "failures": failures}), flush=True)
"""


def test_dns_pod_restart_loses_no_query(dc: Cluster, ns: str, tmp_path: Path) -> None:
    client(dc, ns)
    name = fqdn("kube-dns", "kube-system")
    wait_for("the DNS Service", lambda: answered(dc, ns, name))
    before = {p["metadata"]["name"] for p in dns_pods(dc)}
    assert len(before) == 2
    victim = sorted(before)[0]
    stop = tmp_path / "stop"
    loop = subprocess.Popen(
        [*rt_cmd(dc), "exec", "-n", ns, CLIENT, "--", PY, "-c", LOOP, name, DNS_IP, str(stop)],
        env=dc.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert loop.stdout is not None
        assert loop.stdout.readline().strip() == "started"
        dc.kubectl("delete", "pod", "-n", "kube-system", victim, "--wait=false")

        def replaced() -> set[str] | None:
            now = {p["metadata"]["name"] for p in dns_pods(dc)}
            return now if len(now) == 2 and victim not in now else None

        after = wait_for("a Ready replacement", replaced, timeout=60)
        # The old pod is gone for good (its lameduck period over) before the loop stops.
        wait_for(
            f"{victim} gone",
            lambda: dc.kubectl("get", "pod", "-n", "kube-system", victim, check=False).returncode != 0,
            timeout=60,
        )
        (new,) = after - before
        (new_ip,) = ips(get(dc, "-n", "kube-system", "pod", new), 4)
        assert ask(dc, ns, name, server=new_ip).data("A") == [DNS_IP]
        stop.write_text("stop")
        out, _ = loop.communicate(timeout=30)
    finally:
        stop.write_text("stop")
        if loop.poll() is None:
            loop.kill()
        loop.wait()
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["total"] > 50 and summary["failures"] == [], summary
    deploy = get(dc, "-n", "kube-system", "deployment", "coredns")
    assert deploy["status"].get("readyReplicas") == 2
