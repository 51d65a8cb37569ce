"""The control-plane process: one store, the API server (TCP on loopback + a Unix socket), the
API server's allocators and admission, the controller manager and the scheduler, on one loop.

``kubewire up`` starts this in the background; it runs until SIGTERM/SIGINT.  It writes its
address into the state directory only once it serves and its controllers have synced, so whoever
waits on it knows it is ready.  The allocators rebuild from the stored Services at every start,
and the controllers from their informers, so a restart resumes where the last process stopped.
``pods/log`` is proxied to the node agents' kubelet sockets (``<state dir>/nodes/<node>/kubelet.sock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubewire.api import addons
from kubewire.api.netconfig import ClusterNetwork
from kubewire.api.registry import default_registry
from kubewire.apiserver.server import APIServer
from kubewire.client.local import LocalClient
from kubewire.controllers.catalog import ControllerSettings, components
from kubewire.controllers.runtime import Manager
from kubewire.errors import NotFound, StatusError
from kubewire.store import podadmission
from kubewire.store.allocators import Allocators
from kubewire.store.store import Store

log = logging.getLogger("kubewire.controlplane")


@dataclass(frozen=True)
class ControlPlaneSettings:
    """Where the control plane keeps its state and listens."""

    state_dir: Path
    host: str
    port: int
    token: str
    durability: str = "normal"
    network: ClusterNetwork = field(default_factory=ClusterNetwork)
    node_monitor_grace_period: float = 50.0
    cluster_dns: bool = False  # install the DNS add-on (kubewire up does, unless --no-dns or --no-nodes)

    @property
    def db_path(self) -> Path:
        return self.state_dir / "store.db"

    @property
    def socket_path(self) -> Path:
        return self.state_dir / "apiserver.sock"

    @property
    def ready_path(self) -> Path:
        return self.state_dir / "ready"

    def kubelet_socket(self, node: str) -> Path | None:
        """Where node ``node``'s kubelet serves ``/containerLogs``; None while nothing listens there."""
        if not node or "/" in node or node in (".", ".."):
            return None
        path = self.state_dir / "nodes" / node / "kubelet.sock"
        return path if path.exists() else None


async def ensure_addons(client: LocalClient, objects: list[dict[str, Any]]) -> None:
    """Create each add-on object that does not exist (the add-on manager's ``EnsureExists``: an
    existing one is the user's, whatever they did to it).  A failure is logged and the others go on."""
    registry = default_registry()
    for obj in objects:
        kind = registry.by_api_version(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        if kind is None:
            continue
        try:
            await client.get(kind, meta["name"], meta.get("namespace", ""))
            continue
        except NotFound:
            pass
        try:
            await client.create(kind, obj, field_manager="kubewire-addons")
        except StatusError as e:
            log.warning("add-on %s %s/%s: %s", obj["kind"], meta.get("namespace"), meta["name"], e)


async def run(settings: ControlPlaneSettings) -> None:
    """Serve until told to stop; the store is closed (and flushed) on the way out."""
    store = Store(default_registry(), settings.db_path, durability=settings.durability)
    Allocators(settings.network.service_cidrs, settings.network.node_port_range).install(store)
    podadmission.install(store)
    server = APIServer(store, settings.token, kubelet_socket=settings.kubelet_socket)
    with contextlib.suppress(FileNotFoundError):
        settings.socket_path.unlink()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(settings.state_dir / "apiserver.crt", settings.state_dir / "apiserver.key")
    runner = await server.serve(settings.host, settings.port, str(settings.socket_path), tls)
    controller_settings = ControllerSettings(settings.network, settings.node_monitor_grace_period)
    client = LocalClient(store)
    managers = [
        Manager(client, store.registry, controllers, component=name)
        for name, controllers in components(controller_settings).items()
    ]
    for manager in managers:
        await manager.start()
    if settings.cluster_dns:
        await ensure_addons(client, addons.coredns(settings.network))
    settings.ready_path.write_text(f"{os.getpid()} {settings.host}:{settings.port}\n")
    log.info("serving on %s:%d (rv %d)", settings.host, settings.port, store.rv)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    for manager in managers:
        await manager.stop()
    with contextlib.suppress(FileNotFoundError):
        settings.ready_path.unlink()
    server.close()
    await runner.cleanup()
    store.close()
