"""Which controllers run, in which component, built from the cluster's settings.

Upstream splits the control loops between two binaries and kubewire keeps the split, because the
component name is what users see as the source of Events (``kubectl describe``):
``kube-controller-manager`` (node IPAM, node lifecycle, workloads, EndpointSlices) and
``default-scheduler``.  Each runs as one :class:`~kubewire.controllers.runtime.Manager` over a
client, in the control-plane process or against any cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubewire.api.netconfig import ClusterNetwork
from kubewire.controllers.daemonset import DaemonSetController
from kubewire.controllers.deployment import DeploymentController
from kubewire.controllers.endpointslice import EndpointSliceController
from kubewire.controllers.nodeipam import NodeIPAMController
from kubewire.controllers.nodelifecycle import NodeLifecycleController
from kubewire.controllers.replicaset import ReplicaSetController
from kubewire.controllers.runtime import Controller
from kubewire.controllers.scheduler import Scheduler
from kubewire.controllers.statefulset import StatefulSetController

CONTROLLER_MANAGER = "kube-controller-manager"
SCHEDULER = "default-scheduler"


@dataclass(frozen=True)
class ControllerSettings:
    """What the control loops are tuned by (upstream flag defaults unless stated)."""

    network: ClusterNetwork = field(default_factory=ClusterNetwork)
    # --node-monitor-grace-period: how long without a heartbeat before a node is NotReady.
    node_monitor_grace_period: float = 50.0


def components(settings: ControllerSettings) -> dict[str, list[Controller]]:
    """Component name -> its controllers."""
    net = settings.network
    manager: list[Controller] = [
        NodeIPAMController(net.pod_cidrs, net.node_mask_sizes, net.service_cidrs),
        NodeLifecycleController(grace_period=settings.node_monitor_grace_period),
        ReplicaSetController(),
        DeploymentController(),
        StatefulSetController(),
        DaemonSetController(),
        EndpointSliceController(max_endpoints_per_slice=net.max_endpoints_per_slice),
    ]
    return {CONTROLLER_MANAGER: manager, SCHEDULER: [Scheduler()]}
