"""The Corefile: CoreDNS's configuration language, the subset a cluster's DNS uses.

kubewire's DNS pods read the same ``Corefile`` key of ConfigMap ``kube-system/coredns`` a kubeadm
or kind cluster has, so editing it works as users expect (the ``reload`` plugin's behaviour: a
change is picked up without a restart).  This module owns parsing it into typed settings; the
server (:mod:`kubewire.agents.dns.server`) acts on them.

Grammar (CoreDNS's Caddyfile dialect): server blocks ``ZONE[:PORT] ... { directives }``, one
directive per line, arguments separated by blanks, an optional ``{ ... }`` block of sub-directives,
``#`` comments, ``{$ENV}`` substitution.  The directives understood: ``kubernetes`` (zones, ``pods``,
``ttl``, ``fallthrough``, ``namespaces``, ``endpoint``, ``kubeconfig``), ``forward`` (to addresses
or a resolv.conf path), ``cache`` (capacity options accepted, TTL caps honoured), ``health``,
``ready``, ``prometheus``, and ``errors``, ``log``, ``loop``, ``reload``, ``loadbalance`` (accepted;
what they change is listed in docs/dns.md).  Anything else is an error in CoreDNS's words
(``Unknown directive 'x'``), so a typo is not silently ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from kubewire.api import addons

DEFAULT_PORT = 53
ACCEPTED = ("errors", "log", "loop", "reload", "loadbalance", "debug", "whoami")
_ENV = re.compile(r"\{\$([A-Za-z_][A-Za-z0-9_]*)\}")


class CorefileError(ValueError):
    """The Corefile cannot be used; the message names the line as CoreDNS does."""


@dataclass(frozen=True)
class Kubernetes:
    zones: tuple[str, ...]
    pods: str = "disabled"  # disabled | insecure | verified
    ttl: int = 5
    fallthrough: tuple[str, ...] | None = None  # None: off; () : every zone
    namespaces: tuple[str, ...] = ()  # empty: all
    endpoint: str = ""
    kubeconfig: str = ""


@dataclass(frozen=True)
class Forward:
    zone: str  # "." for everything
    to: tuple[str, ...]  # "ip:port" (port 53 when omitted) or a resolv.conf path


@dataclass(frozen=True)
class Cache:
    ttl: int = 3600  # the cap on cached TTLs (CoreDNS's default maximum)
    success_ttl: int = 3600
    denial_ttl: int = 1800
    capacity: int = 9984
    zones: tuple[str, ...] = (".",)


@dataclass(frozen=True)
class Server:
    """One server block."""

    zones: tuple[str, ...]
    port: int = DEFAULT_PORT
    kubernetes: Kubernetes | None = None
    forward: Forward | None = None
    cache: Cache | None = None
    health: str = ""  # listen address, "" when the plugin is absent
    ready: str = ""
    prometheus: str = ""
    plugins: tuple[str, ...] = ()  # every directive, in order (for `errors`, `loadbalance` ...)


@dataclass(frozen=True)
class Corefile:
    servers: tuple[Server, ...] = field(default=())

    def server_for(self, port: int = DEFAULT_PORT) -> tuple[Server, ...]:
        return tuple(s for s in self.servers if s.port == port)


# The Corefile kubewire's add-on installs (kubeadm's), for the default cluster domain.
DEFAULT = addons.COREFILE % {"domain": "cluster.local"}


@dataclass
class _Directive:
    name: str
    args: list[str]
    line: int
    block: list[_Directive] = field(default_factory=list)


def _tokens(text: str, env: Mapping[str, str]) -> Iterator[tuple[int, str]]:
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0]
        line = _ENV.sub(lambda m: env.get(m.group(1), ""), line)
        for word in line.replace("{", " { ").replace("}", " } ").split():
            yield n, word
        yield n, "\n"


def _directives(tokens: list[tuple[int, str]], i: int, depth: int) -> tuple[list[_Directive], int]:
    out: list[_Directive] = []
    current: _Directive | None = None
    while i < len(tokens):
        n, word = tokens[i]
        i += 1
        if word == "\n":
            current = None
        elif word == "}":
            if depth == 0:
                raise CorefileError(
                    f"Corefile:{n} - Error during parsing: Unexpected '}}' because no matching opening brace"
                )
            return out, i
        elif word == "{":
            if current is None:
                raise CorefileError(f"Corefile:{n} - Error during parsing: Unexpected '{{'")
            current.block, i = _directives(tokens, i, depth + 1)
            current = None
        elif current is None:
            current = _Directive(word, [], n)
            out.append(current)
        else:
            current.args.append(word)
    if depth:
        raise CorefileError("Corefile - Error during parsing: Unexpected EOF, missing closing brace")
    return out, i


def _zone(text: str) -> str:
    text = text.lower().removeprefix("dns://")
    return text if text.endswith(".") else text + "."


def _split_key(key: str, line: int) -> tuple[str, int]:
    host, port = key.lower().removeprefix("dns://"), DEFAULT_PORT
    if ":" in host:
        host, _, tail = host.rpartition(":")
        if not tail.isdigit() or not 0 < int(tail) < 65536:
            raise CorefileError(f"Corefile:{line} - Error during parsing: invalid port '{tail}'")
        port = int(tail)
    return _zone(host or "."), port


def _int(d: _Directive, value: str, what: str) -> int:
    if not value.isdigit():
        raise CorefileError(
            f"Corefile:{d.line} - Error during parsing: {d.name}: {what} must be a number, not '{value}'"
        )
    return int(value)


def _kubernetes(d: _Directive, zones: tuple[str, ...]) -> Kubernetes:
    k = Kubernetes(zones=tuple(_zone(z) for z in d.args) or zones)
    values: dict[str, object] = {}
    for sub in d.block:
        if sub.name == "pods":
            if len(sub.args) != 1 or sub.args[0] not in ("disabled", "insecure", "verified"):
                raise CorefileError(
                    f"Corefile:{sub.line} - Error during parsing: pods: value must be one of disabled, insecure, verified"
                )
            values["pods"] = sub.args[0]
        elif sub.name == "ttl":
            ttl = _int(sub, sub.args[0] if sub.args else "", "ttl")
            if ttl > 3600:
                raise CorefileError(
                    f"Corefile:{sub.line} - Error during parsing: ttl must be in range [0, 3600]: {ttl}"
                )
            values["ttl"] = ttl
        elif sub.name == "fallthrough":
            values["fallthrough"] = tuple(_zone(z) for z in sub.args)
        elif sub.name == "namespaces":
            values["namespaces"] = tuple(sub.args)
        elif sub.name == "endpoint":
            values["endpoint"] = sub.args[0] if sub.args else ""
        elif sub.name == "kubeconfig":
            values["kubeconfig"] = sub.args[0] if sub.args else ""
        elif sub.name not in (
            "noendpoints",
            "labels",
            "namespace_labels",
            "endpoint_pod_names",
            "ignore",
            "multicluster",
        ):
            raise CorefileError(f"Corefile:{sub.line} - Error during parsing: unknown property '{sub.name}'")
    return Kubernetes(**{**k.__dict__, **values})  # type: ignore[arg-type]


def _cache(d: _Directive) -> Cache:
    ttl = _int(d, d.args[0], "TTL") if d.args else 3600
    zones = tuple(_zone(z) for z in d.args[1:]) or (".",)
    success, denial = (9984, min(ttl, 3600)), (9984, min(ttl, 1800))
    for sub in d.block:
        if sub.name in ("success", "denial") and sub.args:
            cap = _int(sub, sub.args[0], "capacity")
            cap_ttl = (
                _int(sub, sub.args[1], "TTL")
                if len(sub.args) > 1
                else (success if sub.name == "success" else denial)[1]
            )
            if sub.name == "success":
                success = (cap, cap_ttl)
            else:
                denial = (cap, cap_ttl)
    return Cache(ttl=ttl, success_ttl=success[1], denial_ttl=denial[1], capacity=success[0], zones=zones)


def parse(text: str, env: Mapping[str, str] | None = None) -> Corefile:
    """The Corefile's server blocks; :class:`CorefileError` for anything CoreDNS would refuse."""
    tokens = list(_tokens(text, os.environ if env is None else env))
    servers: list[Server] = []
    i = 0
    while i < len(tokens):
        keys: list[tuple[int, str]] = []
        while i < len(tokens) and tokens[i][1] not in ("{",):
            if tokens[i][1] == "}":
                raise CorefileError(
                    f"Corefile:{tokens[i][0]} - Error during parsing: Unexpected '}}' because no matching opening brace"
                )
            if tokens[i][1] != "\n":
                keys.append(tokens[i])
            elif keys:
                break
            i += 1
        if not keys:
            break
        if i >= len(tokens) or tokens[i][1] != "{":
            raise CorefileError(
                f"Corefile:{keys[0][0]} - Error during parsing: expected '{{' after the server block keys"
            )
        block, i = _directives(tokens, i + 1, 1)
        split = [_split_key(k.rstrip(","), n) for n, k in keys]
        ports = {p for _, p in split}
        if len(ports) != 1:
            raise CorefileError(f"Corefile:{keys[0][0]} - Error during parsing: one port per server block")
        zones = tuple(z for z, _ in split)
        servers.append(_server(zones, ports.pop(), block))
    if not servers:
        raise CorefileError("Corefile - Error during parsing: no server blocks")
    return Corefile(tuple(servers))


def _server(zones: tuple[str, ...], port: int, block: list[_Directive]) -> Server:
    values: dict[str, object] = {}
    names = []
    for d in block:
        names.append(d.name)
        if d.name == "kubernetes":
            values["kubernetes"] = _kubernetes(d, zones)
        elif d.name == "forward":
            if len(d.args) < 2:
                raise CorefileError(
                    f"Corefile:{d.line} - Error during parsing: Wrong argument count or unexpected line ending after '{d.args[0] if d.args else 'forward'}'"
                )
            values["forward"] = Forward(_zone(d.args[0]), tuple(d.args[1:]))
        elif d.name == "cache":
            values["cache"] = _cache(d)
        elif d.name in ("health", "ready", "prometheus"):
            default = {"health": ":8080", "ready": ":8181", "prometheus": "localhost:9153"}[d.name]
            values[d.name] = d.args[0] if d.args else default
        elif d.name not in ACCEPTED:
            raise CorefileError(f"Corefile:{d.line} - Error during parsing: Unknown directive '{d.name}'")
    return Server(zones=zones, port=port, plugins=tuple(names), **values)  # type: ignore[arg-type]


def listen_address(text: str) -> tuple[str, int]:
    """``:9153`` / ``localhost:9153`` / ``0.0.0.0:8080`` -> (host, port); an empty host is every address."""
    host, _, port = text.rpartition(":")
    return ("" if host in ("", "0.0.0.0") else host), int(port)
