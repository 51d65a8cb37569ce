"""Cluster DNS benchmark: dnsperf from a pod against kubewire's cluster DNS, beside Knot DNS in the same run.

One fresh cluster (``kubewire up --nodes 1`` in a private state directory, always brought ``down``):

- ``--services`` selector-less ClusterIP Services ``bench/svc-<i>`` (one ``kubectl create`` of a List);
  the run starts once the cluster DNS answers the last one's name through ``kube-dns``;
- Deployment ``kube-system/coredns`` scaled to 1 replica: one process, pinned with ``taskset`` to one
  CPU (the second CPU this process may use);
- the reference: ``knotd`` (Debian's ``knot``) as a pod of the same cluster (a busybox-image pod whose
  command is the machine's ``knotd``) with one UDP, one TCP and one background worker, serving a zone
  file for ``cluster.local`` with the same SOA (TTL 5, as the ``kubernetes`` plugin), NS and the
  same N A records; pinned to the same CPU;
- the load: ``dnsperf`` in a busybox-image pod (``kubewire exec``), pinned to the first CPU, all pods
  on the one node.  One query file for every target (``--services`` names, shuffled with a fixed
  seed): 80 % A of existing Services, 10 % AAAA of existing Services (NODATA: the cluster is
  IPv4-only), 10 % A of ``svc-<i>.bench.default.svc.cluster.local`` (NXDOMAIN: what a pod in
  ``default`` asks first for ``svc-<i>.bench`` through its search path).

Targets: the CoreDNS pod's IP, the ``kube-dns`` ClusterIP 10.96.0.10 (kube-proxy's DNAT in the node
to that same pod) and the knot pod's IP.  Two phases per target:

- throughput: ``dnsperf -l --seconds -c --clients -q --outstanding`` (as fast as answers come back),
  ``--rounds`` times, the three targets in turn, and the median of each:
  QPS, lost, average / max latency (which at saturation is mostly the outstanding queue: Little's
  law), the server's CPU (utime + stime of its process over the run) and the QPS per CPU-second
  of the server.  dnsperf has one core: a server that does not use all of its own (knot) is
  limited by the load generator, and its QPS is a floor; QPS per server CPU-second compares the
  servers' cost per query regardless;
- latency: ``dnsperf -v -Q --latency-qps`` for ``--latency-seconds`` (the same offered rate for every
  target, below saturation): p50 / p90 / p99 / max from dnsperf's per-query lines (dnsperf 2.10
  prints only min / max / average / stddev).

Then ``--propagation`` new Services, each timed from ``kubectl create`` returning (the API stored
it) to the first answer from the DNS pod, which a poller in the load generator pod asks for the name
every millisecond from before the write.

Goals (issue 6, printed, never asserted): at least 20,000 QPS on one core, and at least half of the
reference server's QPS in the same run.  Needs root, ``kubectl``, ``dnsperf``, ``knotd``, ``dig``
and ``taskset``.

    sudo .venv/bin/python bench/dns.py [--services 1000] [--seconds 10] [--rounds 3] [--clients 10]
        [--outstanding 100] [--latency-qps 10000] [--latency-seconds 5] [--propagation 5] [--keep]

About two minutes with the defaults (three rounds of 3 × 10 s, then 3 × 5 s, set-up and tear-down).

``--keep`` leaves the cluster and its temporary directory up for debugging (it prints how to remove
them).  Everything else it creates lives in one temporary directory and one cluster, both removed
on the way out, also on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _shared
from _shared import Timeout

NAME = f"kwbdns{os.getpid()}"
NAMESPACE = "bench"
DOMAIN = "cluster.local"
CLUSTER_DNS = "10.96.0.10"
TTL = 5  # the kubernetes plugin's default TTL (kubewire's Corefile has no `ttl`)
# CoreDNS's synthesised SOA for the cluster zone (mname, rname and timers as it answers them).
SOA = f"ns.dns.{DOMAIN}. hostmaster.{DOMAIN}. 1 7200 1800 86400 {TTL}"
LOADGEN, KNOT = "loadgen", "knot"  # not "client": `kubewire exec client` is the client namespace
GOAL_QPS = 20_000


def run(argv: list[str], env: dict[str, str], stdin: str = "", timeout: float = 60, check: bool = True) -> str:
    return _shared.run(argv, stdin, timeout, env=env, check=check)


class Cluster:
    """One kubewire cluster in a private state directory, driven through its CLI and kubectl."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "state"
        self.dir.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        self.env.update(KUBEWIRE_STATE_DIR=str(self.dir), HOME=str(tmp), KUBECONFIG=str(self.dir / NAME / "kubeconfig"))
        self.started = False

    def kw(self, *args: str, timeout: float = 120) -> str:
        return run([sys.executable, "-m", "kubewire.cli.main", "--name", NAME, *args], self.env, timeout=timeout)

    def kubectl(self, *args: str, stdin: str = "", timeout: float = 60) -> str:
        return run(["kubectl", *args], self.env, stdin=stdin, timeout=timeout)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", "-o", "json", *args))

    def exec(self, pod: str, *argv: str, timeout: float = 30, check: bool = True) -> str:
        return run(
            [sys.executable, "-m", "kubewire.cli.main", "--name", NAME, "exec", "-n", NAMESPACE, pod, "--", *argv],
            self.env,
            timeout=timeout,
            check=check,
        )

    def up(self) -> float:
        t0 = time.monotonic()
        self.started = True  # a failed `up` may still have created namespaces: `down` removes them
        self.kw("up", "--nodes", "1", timeout=120)
        return time.monotonic() - t0

    def down(self) -> None:
        if self.started:
            self.kw("down", timeout=120)
            self.started = False

    def pid(self, namespace: str, pod: str, container: str) -> int:
        """The container's process, from the kubelet's record (``pod.json`` in the pod's directory)."""
        obj = self.get("pod", "-n", namespace, pod)
        node, uid = obj["spec"]["nodeName"], obj["metadata"]["uid"]
        record = self.dir / NAME / "nodes" / node / "pods" / f"{namespace}_{pod}_{uid}" / "pod.json"
        pid = int(json.loads(record.read_text())["containers"][container]["pid"])
        if pid <= 0:
            raise RuntimeError(f"{namespace}/{pod}: container {container} has no process in {record}")
        return pid


def wait(what: str, timeout: float, probe: Any, interval: float = 0.25) -> Any:
    """Poll ``probe()`` until it returns something truthy; at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except (RuntimeError, Timeout, KeyError, ValueError, OSError) as e:
            last = e
            if isinstance(e, Timeout) and time.monotonic() > deadline:
                raise
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what} (last: {str(last)[-500:]})")
        time.sleep(interval)


# --- the objects ------------------------------------------------------------------------------------


def services(n: int) -> str:
    items: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}]
    for i in range(n):
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"svc-{i}", "namespace": NAMESPACE},
                "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def pod(name: str, command: list[str]) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": name}},
            "spec": {
                "containers": [{"name": name, "image": "busybox", "command": command}],
                "terminationGracePeriodSeconds": 1,
            },
        }
    )


def knot_files(d: Path, cluster_ips: dict[str, str]) -> Path:
    """knotd's config and zone in ``d`` (its storage and rundir too); the config's path."""
    for sub in ("run", "storage"):
        (d / sub).mkdir(parents=True)
    zone = [f"$ORIGIN {DOMAIN}.", f"$TTL {TTL}", f"@ SOA {SOA}", f"@ NS ns.dns.{DOMAIN}.", f"ns.dns A {CLUSTER_DNS}"]
    zone += [f"{name}.{NAMESPACE}.svc A {ip}" for name, ip in sorted(cluster_ips.items())]
    (d / f"{DOMAIN}.zone").write_text("\n".join(zone) + "\n")
    conf = d / "knot.conf"
    conf.write_text(
        f"""server:
    rundir: "{d / "run"}"
    user: root:root
    listen: 0.0.0.0@53
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{d / "storage"}"
log:
  - target: stderr
    any: info
zone:
  - domain: {DOMAIN}
    file: "{d / f"{DOMAIN}.zone"}"
    storage: "{d}"
    zonefile-sync: -1
    journal-content: none
"""
    )
    return conf


def query_file(path: Path, n: int, count: int = 20_000) -> str:
    """The query mix (see the module docstring), shuffled with a fixed seed; a one-line description."""
    rng = random.Random(6)
    lines = []
    for _ in range(count):
        x, i = rng.random(), rng.randrange(n)
        if x < 0.8:
            lines.append(f"svc-{i}.{NAMESPACE}.svc.{DOMAIN} A")
        elif x < 0.9:
            lines.append(f"svc-{i}.{NAMESPACE}.svc.{DOMAIN} AAAA")
        else:
            lines.append(f"svc-{i}.{NAMESPACE}.default.svc.{DOMAIN} A")
    path.write_text("\n".join(lines) + "\n")
    return f"{count} queries over {n} Services: 80% A (hit), 10% AAAA (NODATA), 10% A under default (NXDOMAIN)"


# --- processes and CPUs -----------------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (every thread), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_busy() -> dict[int, tuple[int, int]]:
    """Per CPU: (busy, total) jiffies from /proc/stat (busy = everything but idle and iowait)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *values = line.split()
            ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
            out[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
    return out


def busy_fraction(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> dict[int, float]:
    return {
        cpu: (after[cpu][0] - b[0]) / (after[cpu][1] - b[1])
        for cpu, b in before.items()
        if cpu in after and after[cpu][1] > b[1]
    }


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()


def pin(pid: int, cpu: int | None, env: dict[str, str]) -> None:
    if cpu is not None:  # -a: every thread (the DNS server's asyncio loop has a helper thread; knotd has workers)
        run(["taskset", "-a", "-cp", str(cpu), str(pid)], env, timeout=10)


# --- dnsperf ----------------------------------------------------------------------------------------


def parse(out: str) -> dict[str, Any]:
    """dnsperf's summary (and, with -v, its per-query latencies in seconds)."""

    def num(pattern: str) -> float | None:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else None

    r: dict[str, Any] = {
        "sent": num(r"Queries sent:\s+(\d+)"),
        "completed": num(r"Queries completed:\s+(\d+)"),
        "lost": num(r"Queries lost:\s+(\d+)"),
        "qps": num(r"Queries per second:\s+([\d.]+)"),
        "runtime": num(r"Run time \(s\):\s+([\d.]+)"),
        "avg": num(r"Average Latency \(s\):\s+([\d.]+)"),
        "min": num(r"Average Latency \(s\):.*\(min ([\d.]+)"),
        "max": num(r"Average Latency \(s\):.*max ([\d.]+)\)"),
        "stddev": num(r"Latency StdDev \(s\):\s+([\d.]+)"),
        "response_size": num(r"Average packet size:.*response (\d+)"),
    }
    m = re.search(r"Response codes:\s+(.*)", out)
    r["rcodes"] = m.group(1).strip() if m else ""
    samples = []
    for line in out.splitlines():
        if line.startswith("> "):
            with contextlib.suppress(ValueError, IndexError):
                samples.append(float(line.rsplit(None, 1)[1]))
    r["samples"] = samples
    if r["qps"] is None or r["sent"] is None:
        raise RuntimeError(f"no dnsperf summary in its output: {out.strip()[-1500:]}")
    return r


def dnsperf(
    cl: Cluster, target: str, queries: Path, cpu: int | None, extra: list[str], seconds: float
) -> dict[str, Any]:
    argv = ["dnsperf", "-s", target, "-d", str(queries), "-l", f"{seconds:g}", *extra]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # dnsperf waits up to its query timeout (-t, 5 s) for the last answers; kubewire exec starts in < 1 s.
    out = cl.exec(LOADGEN, *argv, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = parse(out)
    r["client_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return r


def rcode_mix(text: str) -> dict[str, float]:
    """dnsperf's "NOERROR 9000 (90.00%), NXDOMAIN 1000 (10.00%)" -> {"NOERROR": 90.0, "NXDOMAIN": 10.0}."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"(\w+) \d+ \(([\d.]+)%\)", text)}


def percentile(sorted_samples: list[float], p: float) -> float | None:
    if not sorted_samples:
        return None
    return sorted_samples[min(len(sorted_samples) - 1, round(p * (len(sorted_samples) - 1)))]


# --- output -----------------------------------------------------------------------------------------


def machine(env: dict[str, str]) -> Iterator[str]:
    tools = []
    with contextlib.suppress(Exception):
        version = run(["dnsperf", "-h"], env, timeout=10, check=False)
        m = re.search(r"Version (\S+)", version)
        knot = run(["knotd", "-V"], env, timeout=10).strip()
        tools.append(f"dnsperf {m.group(1) if m else '?'}; {knot}")
    return _shared.machine(tools)


POLLER = """
import sys, time
import dns.message, dns.query
name, server = sys.argv[1], sys.argv[2]
query = dns.message.make_query(name, "A")
dns.query.udp(query, server, timeout=2)
print("polling", flush=True)
deadline = time.time() + 20
while time.time() < deadline:
    if dns.query.udp(dns.message.make_query(name, "A"), server, timeout=1).answer:
        print(time.time(), flush=True)
        break
    time.sleep(0.001)
"""


def create_service(kubeconfig: Path, name: str) -> float:
    """Create Service ``bench/<name>`` through the API (kubewire's HTTP client, no kubectl process in
    the way); the wall-clock time at which the API server's reply arrived."""
    import asyncio

    from kubewire.api.service import SERVICE
    from kubewire.client.http import HttpClient

    async def go() -> float:
        client = HttpClient.from_kubeconfig(kubeconfig)
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"ports": [{"port": 80}]},
        }
        try:
            await client.create(SERVICE, body)
            return time.time()
        finally:
            await client.close()

    return asyncio.run(go())


def propagation(cl: Cluster, server: str, count: int) -> list[float]:
    """For each of ``count`` new Services: a poller in the load generator pod asks ``server`` for its
    name every millisecond from before the write; the time from the API server's reply to the create
    (the Service is stored) to the poller's first answer.  Pods share this machine's clock, so a
    small negative figure is possible: the answer can beat the reply back to this process."""
    out = []
    for i in range(count):
        name = f"prop-{i}"
        argv = [sys.executable, "-m", "kubewire.cli.main", "--name", NAME, "exec", "-n", NAMESPACE, LOADGEN, "--"]
        argv += [sys.executable, "-c", POLLER, f"{name}.{NAMESPACE}.svc.{DOMAIN}", server]
        poller = subprocess.Popen(argv, env=cl.env, stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            assert poller.stdout is not None
            if poller.stdout.readline().strip() != "polling":
                raise RuntimeError("the propagation poller did not start")
            acknowledged = create_service(Path(cl.env["KUBECONFIG"]), name)
            seen = poller.stdout.readline().strip()
            if not seen:
                raise RuntimeError(f"Service {name} never answered within 20 s")
            out.append((float(seen) - acknowledged) * 1000)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(poller.pid, signal.SIGKILL)
            poller.wait()
    return out


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description="dnsperf against kubewire's cluster DNS and knot, in one cluster")
    ap.add_argument("--services", type=int, default=1000, help="ClusterIP Services (A records) to serve")
    ap.add_argument("--seconds", type=float, default=10, help="throughput run per target (s)")
    ap.add_argument("--clients", type=int, default=10, help="dnsperf -c: client sockets")
    ap.add_argument("--outstanding", type=int, default=100, help="dnsperf -q: queries in flight (its default)")
    ap.add_argument("--latency-qps", type=int, default=10_000, help="dnsperf -Q of the latency run; 0: no latency run")
    ap.add_argument("--latency-seconds", type=float, default=5, help="latency run per target (s)")
    ap.add_argument("--rounds", type=int, default=3, help="throughput runs of each target, interleaved (median)")
    ap.add_argument("--propagation", type=int, default=5, help="new Services timed from API write to answer")
    ap.add_argument("--keep", action="store_true", help="leave the cluster and temporary directory up (debugging)")
    args, _ = ap.parse_known_args()  # ./dev bench passes the same arguments to every benchmark
    if os.geteuid() != 0:
        print("bench/dns.py: skipped (network namespaces need root)")
        return 0
    if missing := [t for t in ("kubectl", "dnsperf", "knotd", "dig", "taskset") if shutil.which(t) is None]:
        print(f"bench/dns.py: skipped (missing {', '.join(missing)}; ./dev installs them)")
        return 0
    if args.services < 1:
        raise SystemExit("bench/dns.py: --services must be at least 1")
    cpus = sorted(os.sched_getaffinity(0))
    client_cpu, server_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    # Make SIGTERM unwind through the `finally` that brings the cluster down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix=f"{NAME}-"))
    cl = Cluster(tmp)
    try:
        return bench(cl, tmp, args, client_cpu, server_cpu)
    finally:
        if args.keep:
            print(
                f"\n--keep: cluster {NAME} is still up; remove it with\n"
                f"  KUBEWIRE_STATE_DIR={cl.dir} {sys.executable} -m kubewire.cli.main --name {NAME} down "
                f"&& rm -rf {tmp}"
            )
        else:
            try:
                cl.down()
            finally:
                shutil.rmtree(tmp, ignore_errors=True)


def bench(cl: Cluster, tmp: Path, args: argparse.Namespace, client_cpu: int | None, server_cpu: int | None) -> int:
    n = args.services
    print(f"kubewire DNS: {' '.join(['bench/dns.py', *sys.argv[1:]])}")
    for line in machine(cl.env):
        print(line)
    t_up = cl.up()
    t0 = time.monotonic()
    cl.kubectl("create", "-f", "-", stdin=services(n), timeout=120)
    t_services = time.monotonic() - t0
    cl.kubectl("-n", "kube-system", "scale", "deployment/coredns", "--replicas=1")
    cl.kubectl("create", "-f", "-", stdin=pod(LOADGEN, ["sleep", "3600"]))

    svcs = cl.get("services", "-n", NAMESPACE)["items"]
    cluster_ips = {s["metadata"]["name"]: s["spec"]["clusterIP"] for s in svcs}
    if len(cluster_ips) != n:
        raise RuntimeError(f"{len(cluster_ips)} Services in {NAMESPACE}, expected {n}")
    conf = knot_files(tmp / "knot", cluster_ips)
    knotd = shutil.which("knotd") or "knotd"
    cl.kubectl("create", "-f", "-", stdin=pod(KNOT, [knotd, "-c", str(conf)]))
    queries = tmp / "queries.txt"
    mix = query_file(queries, n)

    def one_coredns() -> dict[str, Any] | None:
        """The one coredns pod, once the scale-down's other pods are gone and it is Ready."""
        items = cl.get("pods", "-n", "kube-system", "-l", "k8s-app=kube-dns")["items"]
        if len(items) != 1 or items[0]["metadata"].get("deletionTimestamp"):
            return None
        conditions = {c["type"]: c["status"] for c in items[0].get("status", {}).get("conditions") or []}
        return items[0] if conditions.get("Ready") == "True" and items[0]["status"].get("podIP") else None

    coredns = wait("exactly one Ready coredns pod", 90, one_coredns, interval=0.5)
    coredns_name, coredns_ip = coredns["metadata"]["name"], coredns["status"]["podIP"]

    def running(name: str) -> str | None:
        obj = cl.get("pod", "-n", NAMESPACE, name)
        return obj["status"].get("podIP") if obj["status"].get("phase") == "Running" else None

    wait(f"pod {LOADGEN} running", 60, lambda: running(LOADGEN))
    knot_ip = wait(f"pod {KNOT} running", 60, lambda: running(KNOT))
    last, last_ip = f"svc-{n - 1}", cluster_ips[f"svc-{n - 1}"]
    fqdn = f"{last}.{NAMESPACE}.svc.{DOMAIN}"

    def answers(server: str) -> bool:
        out = cl.exec(LOADGEN, "dig", "+short", "+time=1", "+tries=1", fqdn, f"@{server}", timeout=15, check=False)
        return last_ip in out.split()

    t0 = time.monotonic()
    wait(f"{CLUSTER_DNS} to answer {fqdn}", 60, lambda: answers(CLUSTER_DNS))
    t_dns = time.monotonic() - t0
    try:
        wait(f"knot to answer {fqdn}", 30, lambda: answers(knot_ip))
    except RuntimeError as e:
        logs = run(["kubectl", "logs", "-n", NAMESPACE, KNOT], cl.env, timeout=20, check=False)
        raise RuntimeError(f"{e}\nknotd's log:\n{logs.strip()[-2000:]}") from None

    coredns_pid = cl.pid("kube-system", coredns_name, "coredns")
    knot_pid = cl.pid(NAMESPACE, KNOT, KNOT)
    for pid, want in ((coredns_pid, "kubewire.agents.dns"), (knot_pid, "knotd")):
        if want not in cmdline(pid):
            raise RuntimeError(f"pid {pid} runs {cmdline(pid)!r}, not {want}")
        pin(pid, server_cpu, cl.env)

    print(
        f"cluster: up {t_up:.1f} s; {n} Services created in {t_services:.1f} s; the last answered by "
        f"{CLUSTER_DNS} {t_dns:.1f} s later"
    )
    print(f"queries: {mix}")
    if server_cpu is None:
        print("pinning: fewer than 2 CPUs allowed: nothing pinned (server and dnsperf share the CPU)")
    else:
        print(
            f"pinning: coredns pod {coredns_name} (pid {coredns_pid}) and knotd (pid {knot_pid}, 1 UDP worker) on "
            f"CPU {server_cpu}; dnsperf on CPU {client_cpu}; kubewire's agents and the rest of the machine unpinned"
        )
    targets = [
        ("kubewire", f"pod {coredns_ip}", coredns_ip, coredns_pid),
        ("kubewire", f"kube-dns {CLUSTER_DNS}", CLUSTER_DNS, coredns_pid),
        ("knot", f"pod {knot_ip}", knot_ip, knot_pid),
    ]
    tick = os.sysconf("SC_CLK_TCK")

    two = server_cpu is not None and client_cpu is not None
    cores = f"CPU{server_cpu}/CPU{client_cpu} busy %" if two else "CPU busy %"
    print(
        f"\nthroughput: dnsperf -l {args.seconds:g} -c {args.clients} -q {args.outstanding} (as fast as answers "
        f"return; latency at saturation is mostly the queue), {args.rounds} round(s) of the three targets in turn"
    )
    head = (
        f"{'server':<9} {'target':<22} {'run':>4} | {'QPS':>8} {'lost %':>7} | {'avg ms':>7} {'max ms':>7} | "
        f"{'server %':>8} {'QPS/CPU-s':>10} {'dnsperf %':>9} {cores:>19} | {'resp B':>6}  response codes"
    )
    print(head)
    print("-" * len(head))

    def row(r: dict[str, Any], run_label: str) -> str:
        per_cpu = "-" if r["per_cpu"] is None else f"{r['per_cpu']:.0f}"
        core_text = f"{100 * r['server_core']:.0f}" + (f" / {100 * r['client_core']:.0f}" if two else "")
        return (
            f"{r['server']:<9} {r['label']:<22} {run_label:>4} | {r['qps']:>8.0f} {r['lost_pct']:>7.2f} | "
            f"{ms(r['avg']):>7} {ms(r['max']):>7} | {100 * r['server_cpu']:>8.0f} {per_cpu:>10} "
            f"{100 * r['client_cpu']:>9.0f} {core_text:>19} | {r['response_size'] or 0:>6.0f}  {r['rcodes']}"
        )

    rounds: dict[str, list[dict[str, Any]]] = {label: [] for _, label, _, _ in targets}
    for i in range(args.rounds):
        for server, label, ip, pid in targets:
            t0, busy0 = cpu_ticks(pid), cpu_busy()
            extra = ["-c", str(args.clients), "-q", str(args.outstanding)]
            r = dnsperf(cl, ip, queries, client_cpu, extra, args.seconds)
            busy = busy_fraction(busy0, cpu_busy())
            runtime = r["runtime"] or args.seconds
            r["server_cpu"] = (cpu_ticks(pid) - t0) / tick / runtime
            r["per_cpu"] = r["qps"] / r["server_cpu"] if r["server_cpu"] > 0 else None
            r["client_cpu"] = r["client_cpu_s"] / runtime
            if server_cpu is not None and client_cpu is not None:
                r["server_core"], r["client_core"] = busy.get(server_cpu, 0.0), busy.get(client_cpu, 0.0)
            else:
                r["server_core"] = r["client_core"] = sum(busy.values()) / max(1, len(busy))
            r["lost_pct"] = 100 * (r["lost"] or 0) / r["sent"] if r["sent"] else 0.0
            r["server"], r["label"] = server, label
            rounds[label].append(r)
            print(row(r, str(i + 1)), flush=True)
    results: list[dict[str, Any]] = []
    for server, label, _, _ in targets:
        runs = rounds[label]
        med: dict[str, Any] = {"server": server, "label": label, "rcodes": runs[-1]["rcodes"]}
        keys = ("qps", "lost_pct", "avg", "max", "server_cpu", "per_cpu", "client_cpu", "server_core", "client_core")
        for key in (*keys, "response_size"):
            values = [r[key] for r in runs if r[key] is not None]
            med[key] = statistics.median(values) if values else None
        med["mixes"] = [rcode_mix(r["rcodes"]) for r in runs]
        results.append(med)
        if args.rounds > 1:
            print(row({**med, "rcodes": ""}, "med"), flush=True)

    latency: list[dict[str, Any]] = []
    if args.latency_qps > 0:
        print(
            f"\nlatency: dnsperf -v -Q {args.latency_qps} -l {args.latency_seconds:g} -c {args.clients} "
            f"-q {args.outstanding} (the same offered rate for every target); per-query latencies"
        )
        head2 = (
            f"{'server':<9} {'target':<22} | {'QPS':>8} {'lost %':>7} | {'avg ms':>7} {'p50 ms':>7} {'p90 ms':>7} "
            f"{'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>7}"
        )
        print(head2)
        print("-" * len(head2))
        for server, label, ip, _pid in targets:
            extra = ["-v", "-Q", str(args.latency_qps), "-c", str(args.clients), "-q", str(args.outstanding)]
            r = dnsperf(cl, ip, queries, client_cpu, extra, args.latency_seconds)
            s = sorted(r["samples"])
            lost = 100 * (r["lost"] or 0) / r["sent"] if r["sent"] else 0.0
            pcts = [percentile(s, p) for p in (0.5, 0.9, 0.99, 0.999)]
            r["server"], r["p50"], r["p99"] = server, pcts[0], pcts[2]
            latency.append(r)
            print(
                f"{server:<9} {label:<22} | {r['qps']:>8.0f} {lost:>7.2f} | {ms(r['avg']):>7} {ms(pcts[0]):>7} "
                f"{ms(pcts[1]):>7} {ms(pcts[2]):>7} {ms(pcts[3]):>8} {ms(s[-1] if s else None):>7}",
                flush=True,
            )

    if args.propagation > 0:
        visible = propagation(cl, coredns_ip, args.propagation)
        print(
            f"\nAPI change -> answer: {len(visible)} new Services, each polled for from {LOADGEN} at {coredns_ip} "
            f"every 1 ms from before the write; ms from the API acknowledging the write to the first answer: "
            f"{', '.join(f'{v:.1f}' for v in visible)} (median {statistics.median(visible):.1f})"
        )

    knot = results[-1]
    print()
    for r in results[:-1]:
        ratio = r["qps"] / knot["qps"] if knot["qps"] else 0.0
        cost = f"{r['per_cpu'] / knot['per_cpu']:.2f}" if r["per_cpu"] and knot["per_cpu"] else "-"
        met = "met" if r["qps"] >= GOAL_QPS else "NOT met"
        half = "met" if ratio >= 0.5 else "NOT met"
        print(
            f"kubewire via {r['label']}: {r['qps']:.0f} QPS on one core (goal >= {GOAL_QPS:,}: {met}); "
            f"{ratio:.2f} x knot's QPS in this run (goal >= 0.5: {half}); {cost} x knot's QPS per server CPU-second"
        )
    if knot["server_cpu"] < 0.9:
        print(
            f"  knot used {100 * knot['server_cpu']:.0f}% of its CPU: something else held it back (dnsperf's core was "
            f"{100 * knot['client_core']:.0f}% busy, its own {100 * knot['server_core']:.0f}%), so its QPS is a floor "
            "and the QPS ratio flatters kubewire; the per-CPU-second ratio does not."
        )
    mixes = [m for r in results for m in r["mixes"]]
    names = set().union(*mixes)
    if any(abs(m.get(c, 0.0) - mixes[-1].get(c, 0.0)) > 1.0 for m in mixes for c in names):
        print("  note: the response-code mixes differ between the servers (see the table): not equivalent answers")
    print(
        "\nserver %: utime+stime of the server process (all threads) over dnsperf's run time; QPS/CPU-s: QPS per "
        "second of server CPU;\n  dnsperf %: the same for dnsperf (and the ~0.2 s of `kubewire exec` before it); "
        "CPU busy %: /proc/stat, all work on that CPU (softirq\n  packet processing and other processes included) "
        "over the whole dnsperf command; resp B: dnsperf's average response size."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
