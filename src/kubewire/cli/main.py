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

from kubewire.api.netconfig import IP_FAMILIES, ClusterNetwork
from kubewire.cli import lifecycle, output
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
        default="ipv4",
        help="address families of a new cluster (default: ipv4; an existing cluster keeps its own)",
    )

    down = sub.add_parser("down", help="stop the cluster and remove its state")
    down.add_argument("--keep-state", action="store_true", help="stop, but keep the stored objects for the next 'up'")

    sub.add_parser("status", help="say whether the cluster runs, where, and what it holds")
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

    cp = sub.add_parser("controlplane", help=argparse.SUPPRESS)
    cp.add_argument("--durability", choices=["normal", "full"], default="normal")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    try:
        state = cluster_state(args.name, env)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return _run(args, state)
    except StatusError as err:
        print(output.error_message(err), file=sys.stderr)
        return EXIT_ERROR
    except lifecycle.LifecycleError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace, state: ClusterState) -> int:
    cmd = args.command
    if cmd == "controlplane":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        return lifecycle.run_controlplane(state, args.durability)
    if cmd == "up":
        lifecycle.up(state, args.timeout, ClusterNetwork(ip_family=args.ip_family))
        if args.examples:
            asyncio.run(output.apply_paths(state, [str(lifecycle.examples_dir())], force=True))
        print(lifecycle.welcome(state))
        return 0
    if cmd == "down":
        lifecycle.down(state, keep_state=args.keep_state)
        return 0
    if cmd == "status":
        print(asyncio.run(lifecycle.status(state)))
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
