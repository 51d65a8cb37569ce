"""kube-proxy's HTTP side: health-check NodePorts, ``/healthz`` and ``/metrics``, answered as upstream.

- **healthCheckNodePort** of every Service with ``externalTrafficPolicy: Local`` (what cloud load
  balancers probe): 200 when this node has local endpoints, 503 when not, with upstream's JSON body
  (``service``, ``localEndpoints``, ``serviceProxyHealthy``) and ``X-Load-Balancing-Endpoint-Weight``.
- **:10256** ``/healthz`` and ``/livez``: whether the last sync is recent (upstream's JSON).
- **:10249** ``/metrics``: Prometheus text under upstream's names
  (``kubeproxy_sync_proxy_rules_duration_seconds`` and friends).

Listeners open in the node's namespace (the agent lives there) on every address, as kube-proxy's
``--healthz-bind-address 0.0.0.0``; the set of health-check ports follows each sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kubewire.agents.httpserve import Handler, serve_http
from kubewire.agents.promtext import Histogram, exponential

log = logging.getLogger("kubewire.proxy")
HEALTHZ_PORT = 10256
METRICS_PORT = 10249
# Upstream's sync-duration buckets (exponential from 1 ms, ×2, 15 buckets).
BUCKETS = exponential(0.001, 2, 15)
STALE_AFTER = 120.0  # /healthz turns 503 when no sync happened for this long (upstream: 2 × sync period)


@dataclass
class ProxyMetrics:
    """The numbers a sync leaves behind."""

    mode: str = "nftables"
    sync: Histogram = field(default_factory=lambda: Histogram(BUCKETS))
    full_sync: Histogram = field(default_factory=lambda: Histogram(BUCKETS))
    partial_sync: Histogram = field(default_factory=lambda: Histogram(BUCKETS))
    programming: Histogram = field(default_factory=lambda: Histogram(BUCKETS))
    last_sync: float = 0.0  # wall clock
    failures: int = 0
    service_changes: int = 0
    endpoint_changes: int = 0
    elements: Mapping[str, int] = field(default_factory=dict)

    def render(self) -> bytes:
        lines: list[str] = []
        lines += self.sync.render("kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds")
        lines += self.full_sync.render(
            "kubeproxy_sync_full_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for full resyncs"
        )
        lines += self.partial_sync.render(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
        )
        lines += self.programming.render(
            "kubeproxy_network_programming_duration_seconds", "In Cluster Network Programming Latency in seconds"
        )
        lines += [
            "# HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds The last time proxy rules were successfully synced",
            "# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge",
            f"kubeproxy_sync_proxy_rules_last_timestamp_seconds {self.last_sync}",
            f"# HELP kubeproxy_sync_proxy_rules_{self.mode}_sync_failures_total Cumulative proxy {self.mode} sync failures",
            f"# TYPE kubeproxy_sync_proxy_rules_{self.mode}_sync_failures_total counter",
            f"kubeproxy_sync_proxy_rules_{self.mode}_sync_failures_total {self.failures}",
            "# HELP kubeproxy_sync_proxy_rules_service_changes_total Cumulative proxy rules Service changes",
            "# TYPE kubeproxy_sync_proxy_rules_service_changes_total counter",
            f"kubeproxy_sync_proxy_rules_service_changes_total {self.service_changes}",
            "# HELP kubeproxy_sync_proxy_rules_endpoint_changes_total Cumulative proxy rules Endpoint changes",
            "# TYPE kubeproxy_sync_proxy_rules_endpoint_changes_total counter",
            f"kubeproxy_sync_proxy_rules_endpoint_changes_total {self.endpoint_changes}",
        ]
        if self.elements:
            name = "kubeproxy_sync_proxy_rules_nftables_elements"
            lines += [f"# HELP {name} Number of elements in a proxy set or map", f"# TYPE {name} gauge"]
            lines += [f'{name}{{set="{k}"}} {v}' for k, v in sorted(self.elements.items())]
        return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class HealthCheck:
    """One Local-policy Service's health-check port and how many endpoints this node has for it."""

    namespace: str
    name: str
    port: int
    local_endpoints: int


def health_response(check: HealthCheck) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps(
        {
            "service": {"namespace": check.namespace, "name": check.name},
            "localEndpoints": check.local_endpoints,
            "serviceProxyHealthy": True,
        },
        indent="\t",
    ).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Load-Balancing-Endpoint-Weight", str(check.local_endpoints)),
    ]
    return (200 if check.local_endpoints > 0 else 503), headers, body


class ProxyHTTP:
    """Owns the listeners; :meth:`update` follows the health checks each sync computes."""

    def __init__(
        self, metrics: ProxyMetrics, healthz_port: int = HEALTHZ_PORT, metrics_port: int = METRICS_PORT
    ) -> None:
        self.metrics = metrics
        self.healthz_port = healthz_port
        self.metrics_port = metrics_port
        self.checks: dict[int, HealthCheck] = {}
        self.servers: dict[int, asyncio.Server] = {}
        self._fixed: list[asyncio.Server] = []

    async def start(self) -> None:
        self._fixed.append(await serve_http(None, self.healthz_port, self._healthz))
        self._fixed.append(await serve_http(None, self.metrics_port, self._metrics))

    def _healthz(self, method: str, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if path.split("?")[0] not in ("/healthz", "/livez"):
            return 404, [("Content-Type", "text/plain")], b"404 page not found\n"
        now = time.time()
        healthy = self.metrics.last_sync > 0 and now - self.metrics.last_sync < STALE_AFTER
        body = json.dumps(
            {
                "lastUpdated": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(self.metrics.last_sync)),
                "currentTime": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(now)),
                "nodeEligible": True,
            }
        ).encode()
        return (200 if healthy else 503), [("Content-Type", "application/json")], body

    def _metrics(self, method: str, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if path.split("?")[0] != "/metrics":
            return 404, [("Content-Type", "text/plain")], b"404 page not found\n"
        return 200, [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")], self.metrics.render()

    def _handler_for(self, port: int) -> Handler:
        return lambda method, path: self._check(port)

    def _check(self, port: int) -> tuple[int, list[tuple[str, str]], bytes]:
        check = self.checks.get(port)
        if check is None:  # closing: the Service just went away
            return 503, [("Content-Type", "text/plain")], b"no such service\n"
        return health_response(check)

    async def update(self, checks: Sequence[HealthCheck]) -> None:
        """Open listeners for new health-check ports, close those no Service uses any more."""
        wanted = {c.port: c for c in checks if c.port}
        for port in list(self.servers):
            if port not in wanted:
                self.servers.pop(port).close()
        self.checks = wanted
        for port in wanted:
            if port in self.servers:
                continue
            try:
                self.servers[port] = await serve_http(None, port, self._handler_for(port))
            except OSError as e:  # a port taken by something else on the node: log, keep the others
                log.warning("health check port %d: %s", port, e)

    async def close(self) -> None:
        for server in [*self._fixed, *self.servers.values()]:
            server.close()
        for server in [*self._fixed, *self.servers.values()]:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self.servers.clear()
        self._fixed.clear()
