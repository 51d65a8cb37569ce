"""The DNS program: configuration, the API watch, and the servers' lifetime.

``python -m kubewire.agents.dns -conf /etc/coredns/Corefile`` is what the ``coredns`` image runs in
a kubewire pod (CoreDNS's own flags: ``-conf``, ``-dns.port``); ``--kubeconfig PATH`` points it at
any cluster instead (an operator running kubewire's DNS against a real cluster, on a port of their
choosing).

Where things come from:

- **The API**: ``--kubeconfig``, else the Corefile's ``kubernetes { kubeconfig … }``, else
  kubewire's in-cluster channel (the kubelet gives its own components ``KUBEWIRE_APISERVER``, the
  API server's Unix socket, since kubewire mounts no service-account token).
- **The Corefile**: the ``-conf`` file when it exists.  In a kubewire pod it does not (kubewire has
  no volumes), so the program reads its own Pod (``KUBEWIRE_POD``), finds the ``configMap`` volume
  mounted at the file's directory and reads that ConfigMap's key through the API: the same source
  a kubeadm cluster's CoreDNS reads, and editing the ConfigMap reloads the server within
  :data:`RELOAD_CHECK` seconds, as CoreDNS's ``reload`` plugin does.
- **Records**: Services, EndpointSlices and Namespaces (and Pods for ``pods verified``) by
  list+watch; each event marks what changed and the zone catches up before the next answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import posixpath
import signal
import sys
from pathlib import Path
from typing import Any

from kubewire.agents.changes import ServiceChanges
from kubewire.agents.dns import corefile
from kubewire.agents.dns.metrics import DnsMetrics
from kubewire.agents.dns.server import DnsServer
from kubewire.api.core import CONFIG_MAP, NAMESPACE
from kubewire.api.discovery import ENDPOINT_SLICE, ServiceKey, object_key
from kubewire.api.pod import POD
from kubewire.api.service import SERVICE
from kubewire.client import Client
from kubewire.client.http import HttpClient
from kubewire.dataplane.dns import records
from kubewire.errors import NotFound
from kubewire.store.informer import Handlers, Informer

log = logging.getLogger("kubewire.dns")
API_ENV = "KUBEWIRE_APISERVER"
POD_ENV = "KUBEWIRE_POD"
RELOAD_CHECK = 2.0  # seconds between looks at the Corefile's source (CoreDNS's reload checks every 30 s)
LAMEDUCK = 5.0  # the default Corefile's `health { lameduck 5s }`
Obj = dict[str, Any]


class ConfigError(Exception):
    """The program cannot start: no API, no Corefile, or one CoreDNS would refuse."""


def api_client(kubeconfig: str) -> Client:
    if kubeconfig:
        return HttpClient.from_kubeconfig(Path(kubeconfig), field_manager="coredns")
    where = os.environ.get(API_ENV, "")
    if where.startswith("unix://"):
        return HttpClient.from_socket(Path(where.removeprefix("unix://")), field_manager="coredns")
    raise ConfigError(
        f"no API to watch: give --kubeconfig, a kubeconfig in the Corefile, or run in a kubewire pod ({API_ENV})"
    )


async def corefile_text(client: Client | None, conf: str) -> str:
    """The Corefile: the -conf file, or the configMap volume mounted at its directory (read via the API)."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        return Path(conf).read_text()
    me = os.environ.get(POD_ENV, "")
    if client is None or "/" not in me:
        raise ConfigError(f"Corefile {conf!r}: no such file")
    namespace, name = me.split("/", 1)
    pod = await client.get(POD, name, namespace)
    directory, key = posixpath.split(conf)
    mounts = {
        m.get("name"): m.get("mountPath", "").rstrip("/")
        for c in pod["spec"]["containers"]
        for m in c.get("volumeMounts") or []
    }
    for volume in pod["spec"].get("volumes") or []:
        source = volume.get("configMap")
        if source is None or mounts.get(volume.get("name")) != directory.rstrip("/"):
            continue
        items = {i.get("path"): i.get("key") for i in source.get("items") or []}
        config_map = await client.get(CONFIG_MAP, source["name"], namespace)
        data = config_map.get("data") or {}
        wanted = items.get(key, key)
        if wanted in data:
            return str(data[wanted])
        raise ConfigError(f"Corefile {conf!r}: ConfigMap {namespace}/{source['name']} has no key {wanted!r}")
    raise ConfigError(f"Corefile {conf!r}: no such file, and no configMap volume is mounted at {directory}")


class Watch:
    """The informers, and the change trackers between them and the zone."""

    def __init__(self, client: Client, zone: records.ClusterZone, pods: bool) -> None:
        self.zone = zone
        self.services = Informer(client, SERVICE)
        self.slices = Informer(client, ENDPOINT_SLICE)
        self.namespaces = Informer(client, NAMESPACE)
        self.pods = Informer(client, POD) if pods else None
        self.changes = ServiceChanges(self.services, self.slices, ("zone",))
        self.changed_pods: set[ServiceKey] = set()
        self.namespaces_changed = False

    def informers(self) -> list[Informer]:
        return [i for i in (self.services, self.slices, self.namespaces, self.pods) if i is not None]

    def start(self) -> None:
        """Build the zone from the synced caches, then record every change."""
        self.zone.build(self.services.list(), self.slices.list())
        self.zone.set_namespaces(_names(self.namespaces.list()))
        self.changes.watch()

        def ns_changed(*_: Obj) -> None:
            self.namespaces_changed = True

        self.namespaces.add_handlers(Handlers(ns_changed, ns_changed, ns_changed))
        if self.pods is not None:
            self.zone.set_pods(self.pods.list())

            def pod_changed(*objs: Obj) -> None:
                self.changed_pods.add(object_key(objs[-1]))

            self.pods.add_handlers(Handlers(pod_changed, pod_changed, pod_changed))
        self.zone.synced = True

    def catch_up(self) -> None:
        """Apply what changed since the last answer (cheap when nothing did)."""
        keys = self.changes.take("zone")
        if keys:
            self.zone.update(keys, self.changes.service, self.changes.slices_of)
        if self.namespaces_changed:
            self.namespaces_changed = False
            self.zone.set_namespaces(_names(self.namespaces.list()))
        if self.changed_pods and self.pods is not None:
            changed, self.changed_pods = self.changed_pods, set()  # the handler reads the attribute anew
            pods = self.pods
            self.zone.update_pods(changed, lambda k: pods.get(f"{k[0]}/{k[1]}"))


def _names(namespaces: list[Obj]) -> list[str]:
    return [str((n.get("metadata") or {}).get("name") or "") for n in namespaces]


async def _dns_ips(client: Client) -> tuple[str, ...]:
    with contextlib.suppress(NotFound):
        svc = await client.get(SERVICE, "kube-dns", "kube-system")
        spec = svc.get("spec") or {}
        ips = tuple(ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None")
        if ips:
            return ips
    return ("10.96.0.10",)


def settings_for(block: corefile.Kubernetes, dns_ips: tuple[str, ...]) -> records.DnsSettings:
    forward_zones = [z for z in block.zones if not z.endswith(("in-addr.arpa.", "ip6.arpa."))]
    reverse = tuple(z.rstrip(".") for z in block.zones if z.endswith(("in-addr.arpa.", "ip6.arpa.")))
    return records.DnsSettings(
        zone=(forward_zones[0] if forward_zones else "cluster.local.").rstrip("."),
        ttl=block.ttl,
        pods=block.pods,  # type: ignore[arg-type]
        dns_ips=dns_ips,
        dns_service=("kube-system", "kube-dns"),
        reverse_zones=reverse,
        fallthrough_reverse=block.fallthrough is not None,
    )


class Stop:
    """Why serving ends: a signal (after the lameduck period) or a changed Corefile (at once)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reload = False

    def set(self, reload: bool = False) -> None:
        self.reload = self.reload or reload
        self.event.set()


async def serve(args: argparse.Namespace, metrics: dict[int, DnsMetrics]) -> bool:
    """Serve until stopped; True when stopped because the Corefile changed (serve it again).
    ``metrics`` (per port) are kept across calls, so counters survive a reload."""
    client: Client | None = None
    with contextlib.suppress(ConfigError):
        client = api_client(args.kubeconfig)
    text = await corefile_text(client, args.conf)
    config = corefile.parse(text)
    blocks = [s for s in config.servers if s.kubernetes is not None]
    if client is None and blocks and blocks[0].kubernetes is not None and blocks[0].kubernetes.kubeconfig:
        client = HttpClient.from_kubeconfig(Path(blocks[0].kubernetes.kubeconfig), field_manager="coredns")
    if client is None:
        client = api_client("")  # raises the ConfigError that says what is missing
    k8s = blocks[0].kubernetes if blocks else None
    zone = records.ClusterZone(
        settings_for(k8s, await _dns_ips(client)) if k8s is not None else records.DnsSettings(), synced=False
    )
    watch = Watch(client, zone, pods=k8s is not None and k8s.pods == "verified")
    tasks = [asyncio.create_task(inf.run()) for inf in watch.informers()]
    servers: list[DnsServer] = []
    stop = Stop()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for server in config.servers:
            port = args.dns_port or server.port
            dns_server = DnsServer(dataclasses.replace(server, port=port), zone, metrics.get(port))
            metrics[port] = dns_server.metrics
            dns_server.engine.before_answer = watch.catch_up
            await dns_server.start(args.listen)
            servers.append(dns_server)
        for inf in watch.informers():
            await inf.synced.wait()
        watch.start()
        for s in servers:
            s.ready = True
        log.info(
            "serving %s on port %s",
            ", ".join(z for s in config.servers for z in s.zones),
            args.dns_port or config.servers[0].port,
        )
        reload_task = asyncio.create_task(_watch_corefile(client, args.conf, text, stop))
        await stop.event.wait()
        reload_task.cancel()
        for s in servers:  # lameduck: not ready, still answering
            s.lameduck = True
        if not stop.reload:
            await asyncio.sleep(args.lameduck)
        return stop.reload
    finally:
        for s in servers:
            s.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        close = getattr(client, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()


async def _watch_corefile(client: Client, conf: str, current: str, stop: Stop) -> None:
    """CoreDNS's ``reload``: when the Corefile changes, stop so that the caller serves the new one."""
    while not stop.event.is_set():
        await asyncio.sleep(RELOAD_CHECK)
        try:
            text = await corefile_text(client, conf)
        except (ConfigError, NotFound, OSError) as e:
            log.warning("reload: %s", e)
            continue
        if text != current:
            try:
                corefile.parse(text)
            except corefile.CorefileError as e:
                log.error("reload: the new Corefile is not used: %s", e)
                current = text
                continue
            log.info("reload: the Corefile changed")
            stop.set(reload=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="coredns", description="kubewire's cluster DNS (CoreDNS-compatible)")
    parser.add_argument("-conf", "--conf", default="Corefile", help="the Corefile (default: ./Corefile)")
    parser.add_argument(
        "-dns.port", "--dns-port", dest="dns_port", type=int, default=0, help="override every server block's port"
    )
    parser.add_argument(
        "--kubeconfig", default="", help="watch this cluster (default: the kubewire cluster the pod runs in)"
    )
    parser.add_argument("--listen", default="", help="listen on this address only (default: every address)")
    parser.add_argument("--lameduck", type=float, default=LAMEDUCK, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [INFO] %(message)s", stream=sys.stdout)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per API request otherwise
    metrics: dict[int, DnsMetrics] = {}  # counters survive reloads, as CoreDNS's do
    while True:
        try:
            reload = asyncio.run(serve(args, metrics))
        except (ConfigError, corefile.CorefileError) as e:
            print(f"plugin/kubernetes: {e}" if isinstance(e, ConfigError) else str(e), file=sys.stderr)
            return 1
        if not reload:
            return 0


if __name__ == "__main__":
    sys.exit(main())
