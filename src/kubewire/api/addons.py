"""The cluster add-ons ``kubewire up`` installs: today, cluster DNS (CoreDNS's objects, as kubeadm makes them).

What a kubeadm (and so kind) cluster has in ``kube-system``: ConfigMap ``coredns`` holding the
``Corefile``, Deployment ``coredns`` (2 replicas, ``k8s-app: kube-dns``, image
``registry.k8s.io/coredns/coredns``, ``-conf /etc/coredns/Corefile``, health on 8080 and readiness on
8181 as probes, ``dnsPolicy: Default``), and Service ``kube-dns`` at the cluster DNS address with
ports ``dns`` (53/UDP), ``dns-tcp`` (53/TCP) and ``metrics`` (9153/TCP).  They are plain objects:
users scale, edit or replace them like any workload.

They carry ``addonmanager.kubernetes.io/mode: EnsureExists`` and are created the way the
Kubernetes add-on manager treats that mode: when absent, never updated or recreated over a user's
change once made (the control plane creates them once per cluster, see
:func:`kubewire.apiserver.controlplane.ensure_addons`).
"""

from __future__ import annotations

from typing import Any

from kubewire.api.netconfig import ClusterNetwork

Obj = dict[str, Any]
COREDNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.11.3"
ADDON_MODE_LABEL = "addonmanager.kubernetes.io/mode"

# kubeadm's Corefile (kind's too) without its `ttl 30`: the kubernetes plugin's own default of 5 s.
COREFILE = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes %(domain)s in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
"""


def coredns(network: ClusterNetwork, replicas: int = 2) -> list[Obj]:
    """ConfigMap, Deployment and Service of the cluster DNS, in creation order."""
    labels = {"k8s-app": "kube-dns"}
    addon = {ADDON_MODE_LABEL: "EnsureExists"}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "coredns", "namespace": "kube-system", "labels": addon},
        "data": {"Corefile": COREFILE % {"domain": network.cluster_domain}},
    }
    probe_defaults = {"timeoutSeconds": 5, "successThreshold": 1}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": "kube-system", "labels": {**labels, **addon}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "priorityClassName": "system-cluster-critical",
                    "tolerations": [
                        {"key": "CriticalAddonsOnly", "operator": "Exists"},
                        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                    ],
                    "dnsPolicy": "Default",
                    "containers": [
                        {
                            "name": "coredns",
                            "image": COREDNS_IMAGE,
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "ports": [
                                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                            ],
                            "livenessProbe": {
                                "httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
                                "initialDelaySeconds": 60,
                                "failureThreshold": 5,
                                **probe_defaults,
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"},
                                "periodSeconds": 1,
                                "failureThreshold": 3,
                                **probe_defaults,
                            },
                            "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": True}],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "config-volume",
                            "configMap": {"name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]},
                        }
                    ],
                },
            },
        },
    }
    families = network.families
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {
                **labels,
                **addon,
                "kubernetes.io/cluster-service": "true",
                "kubernetes.io/name": "CoreDNS",
            },
            "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
        },
        "spec": {
            "selector": labels,
            "clusterIP": network.cluster_dns[0],
            "clusterIPs": network.cluster_dns,
            "ipFamilies": list(families),
            "ipFamilyPolicy": "RequireDualStack" if len(families) > 1 else "SingleStack",
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
        },
    }
    return [config_map, deployment, service]
