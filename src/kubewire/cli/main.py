"""The ``kubewire`` command: parse flags once, build settings, call into the layers below.

Subcommands: ``up``, ``down``, ``status``, ``apply -f``, ``get``, ``kubeconfig`` and the internal
``controlplane`` (what ``up`` runs in the background).  Errors from the API come back as
:class:`~kubewire.errors.StatusError` and are printed the way kubectl prints them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from kubewire.api.netconfig import IP_FAMILIES, POD_NETWORKS, PROXY_MODES
from kubewire.cli import clusterconfig, lifecycle
from kubewire.cli.state import ClusterState, cluster_state
from kubewire.errors import StatusError

EXIT_ERROR = 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kubewire", description="The Kubernetes service-networking stack, for real, on one machine."
    )
    p.add_argument(
        "--name", default=os.environ.get("KUBEWIRE_CLUSTER", "kubewire"), help="cluster name (default: kubewire)"
    )
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the cluster's control plane in the background (idempotent)")
    up.add_argument("--examples", action="store_true", help="apply the bundled example manifests once it is up")
    up.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the control plane")
    up.add_argument(
        "--ip-family",
        choices=IP_FAMILIES,
        default=None,
        help="address families of a new cluster (default: ipv4; an existing cluster keeps its own)",
    )
    up.add_argument("--nodes", type=int, default=None, help="number of nodes of a new cluster (default: 3)")
    up.add_argument("--zones", type=int, default=None, help="spread the nodes over this many zones (default: 1)")
    up.add_argument(
        "--pod-network", choices=POD_NETWORKS, default=None, help="routed between nodes (default) or a VXLAN overlay"
    )
    up.add_argument(
        "--proxy-mode", choices=PROXY_MODES, default=None, help="kube-proxy's mode: nftables (default) or iptables"
    )
    up.add_argument(
        "--node-monitor-grace-period",
        type=float,
        default=None,
        help="seconds without heartbeats before a node goes NotReady (default: 50, as kube-controller-manager)",
    )
    up.add_argument("--config", help="a cluster config file (kind: Cluster) with the same settings")
    up.add_argument("--no-nodes", action="store_true", help="run only the control plane (no namespaces, no root)")
    up.add_argument(
        "--no-dns", action="store_true", help="do not install the cluster DNS add-on (kube-system/coredns, kube-dns)"
    )

    down = sub.add_parser("down", help="stop the cluster and remove its state")
    down.add_argument("--keep-state", action="store_true", help="stop, but keep the stored objects for the next 'up'")

    sub.add_parser("status", help="say whether the cluster runs, where, and what it holds")

    ex = sub.add_parser("exec", help="run a command inside a pod, a node (node/NAME) or the client namespace")
    ex.add_argument("target", help="POD, node/NAME or client")
    ex.add_argument("-n", "--namespace", default="default")
    ex.add_argument("-c", "--container", default="", help="the container whose environment to use (default: the first)")
    ex.add_argument(
        "argv", nargs=argparse.REMAINDER, metavar="-- CMD", help="the command and its arguments (default: sh)"
    )

    node = sub.add_parser("node", help="simulate node failures: stop or start a node")
    node.add_argument("action", choices=["stop", "start"])
    node.add_argument("node_name", metavar="NAME")

    proxy = sub.add_parser("proxy", help="the Service data plane: show the rules kube-proxy keeps in a node")
    proxy_sub = proxy.add_subparsers(dest="proxy_command", required=True)
    rules = proxy_sub.add_parser("rules", help="print the nftables rules in force on a node")
    rules.add_argument("--node", default="", help="the node (default: the first)")

    agent = sub.add_parser("node-agent", help=argparse.SUPPRESS)
    agent.add_argument("node_name")
    sub.add_parser("kubeconfig", help="print the path of the kubeconfig to use with kubectl")

    apply = sub.add_parser("apply", help="server-side apply manifests (files, directories or -)")
    apply.add_argument("-f", "--filename", action="append", required=True)
    apply.add_argument("--force-conflicts", action="store_true")

    get = sub.add_parser("get", help="list objects as kubectl does")
    get.add_argument("resource")
    get.add_argument("names", nargs="*")
    get.add_argument("-n", "--namespace", default="default")
    get.add_argument("-A", "--all-namespaces", action="store_true")
    get.add_argument("-l", "--selector", default="")
    get.add_argument("-o", "--output", default="", choices=["", "wide", "yaml", "json", "name"])

    dns = sub.add_parser(
        "dns",
        help="run the cluster DNS server here, against any cluster (CoreDNS's flags; --help for them)",
        add_help=False,
    )
    dns.add_argument("dns_args", nargs=argparse.REMAINDER)

    cp = sub.add_parser("controlplane", help=argparse.SUPPRESS)
    cp.add_argument("--durability", choices=["normal", "full"], default="normal")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "dns":  # CoreDNS's single-dash flags are the DNS program's to parse
        args.dns_args = [*extra, *args.dns_args]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    env = dict(os.environ)
    try:
        state = cluster_state(args.name, env)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return _run(args, state)
    except StatusError as err:
        from kubewire.cli import output

        print(output.error_message(err), file=sys.stderr)
        return EXIT_ERROR
    except (lifecycle.LifecycleError, clusterconfig.ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace, state: ClusterState) -> int:
    if args.command == "controlplane":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        return lifecycle.run_controlplane(state, args.durability)
    if args.command == "node-agent":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logging.getLogger("httpx2").setLevel(logging.WARNING)
        logging.getLogger("httpx").setLevel(logging.WARNING)
        from kubewire.agents import nodeagent

        return nodeagent.main(state.dir, args.node_name, state.settings())
    if args.command == "dns":
        from kubewire.agents.dns import app

        return app.main(list(args.dns_args))
    # The daemons above import only their own layers; everything else is imported here.
    from kubewire.cli import nodes, output

    cmd = args.command
    if cmd == "up":
        config = clusterconfig.from_args(args)
        if state.exists():
            kept = clusterconfig.differences(args, state.settings(), state.network())
            if kept:
                print(
                    f"note: cluster {state.name!r} keeps the settings it was made with ({kept}); "
                    f"'kubewire --name {state.name} down' first to change them",
                    file=sys.stderr,
                )
        if not args.no_nodes:
            nodes.require_root()
        start_nodes = None if args.no_nodes else (lambda: nodes.start_nodes(state))
        lifecycle.up(state, args.timeout, config.network, config.settings(), meanwhile=start_nodes)
        if not args.no_nodes:
            nodes.wait_nodes(state, args.timeout)
        if args.examples:
            asyncio.run(output.apply_paths(state, [str(lifecycle.examples_dir())], force=True))
            if not args.no_nodes:
                print(asyncio.run(nodes.wait_examples(state, args.timeout)))
        print(lifecycle.welcome(state, with_nodes=not args.no_nodes))
        return 0
    if cmd == "down":
        nodes.down_nodes(state)
        lifecycle.down(state, keep_state=args.keep_state)
        return 0
    if cmd == "exec":
        return nodes.exec_into(state, args.target, args.namespace, args.argv, args.container)
    if cmd == "proxy":
        nodes.require_root()
        print(nodes.proxy_rules(state, args.node), end="")
        return 0
    if cmd == "node":
        nodes.require_root()
        nodes.node_action(state, args.node_name, args.action)
        return 0
    if cmd == "status":
        print(asyncio.run(lifecycle.status(state)))
        if state.exists():
            print(nodes.node_summary(state), end="")
        return 0 if state.pid() else 3
    if cmd == "kubeconfig":
        if not state.exists():
            raise lifecycle.LifecycleError(f"cluster {state.name!r} does not exist; run 'kubewire up' first")
        print(state.kubeconfig_path)
        return 0
    lifecycle.require_running(state)
    if cmd == "apply":
        asyncio.run(output.apply_paths(state, args.filename, force=args.force_conflicts))
        return 0
    if cmd == "get":
        ns = "" if args.all_namespaces else args.namespace
        print(asyncio.run(output.get(state, args.resource, args.names, ns, args.selector, args.output)), end="")
        return 0
    raise AssertionError(cmd)


if __name__ == "__main__":
    sys.exit(main())
