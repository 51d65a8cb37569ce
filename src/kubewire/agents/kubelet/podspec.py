"""What kubelet-lite gives each pod and container: environment, command line, resolv.conf, hostname, /etc/hosts.

Processes in kubewire pods must see exactly what a real kubelet would give them, or programs that
read ``KUBERNETES_SERVICE_HOST``, ``$(POD_IP)`` in their args, the ``search`` line of resolv.conf or
their own FQDN behave differently here than in a cluster.  This module owns those rules, as pure
functions over wire-form dicts (no I/O, no asyncio): the caller reads the inputs (ConfigMaps,
Secrets, Services, the node's resolv.conf and hosts file) and writes the outputs.

Upstream sources, whose behaviour is matched (wording of errors included):

- :func:`container_env` — ``makeEnvironmentVariables`` and ``getServiceEnvVarMap``
  (``pkg/kubelet/kubelet_pods.go``), ``envvars.FromServices`` (``pkg/kubelet/envvars``), the
  downward API (``pkg/fieldpath``, ``pkg/apis/core/pods``, ``pkg/api/v1/resource``);
- :func:`expand` / :func:`expand_args` — ``third_party/forked/golang/expansion`` and
  ``ExpandContainerCommandAndArgs``;
- :func:`pod_dns_config` / :func:`resolv_conf` — ``pkg/kubelet/network/dns/dns.go``, rendered as
  containerd's CRI plugin writes the file (``search``, ``nameserver`` lines, ``options``);
- :func:`pod_hostname` / :func:`kernel_hostname` — ``GeneratePodHostNameAndDomain`` and
  ``GetNodenameForKernel``;
- :func:`hosts_file` — ``managedHostsFileContent`` / ``nodeHostsFileContent``.

Where upstream's output order comes from Go map iteration (the environment list, merged DNS
options, Services sharing a variable name) it is unspecified upstream; kubewire makes it
deterministic and documents the order it picks.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from types import MappingProxyType
from typing import Any, NamedTuple

from kubewire.api.core import as_dict, as_dicts, as_list, as_str
from kubewire.api.fields import go_quote
from kubewire.api.meta import is_dns1123_label, is_qualified_name, name_of, namespace_of
from kubewire.api.pod import is_relaxed_env_var_name, parse_quantity

Obj = dict[str, Any]
EnvList = list[tuple[str, str]]

_EMPTY: Mapping[str, Any] = MappingProxyType({})

CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"  # upstream kubecontainer.ErrCreateContainerConfig
CREATE_POD_SANDBOX_ERROR = "CreatePodSandboxError"  # upstream kubecontainer.ErrCreatePodSandbox

# Node allocatable used for ``resourceFieldRef`` limits a container leaves unset, when the caller
# has no Node status to pass: a small laptop-sized node.
DEFAULT_ALLOCATABLE: Mapping[str, str] = MappingProxyType({"cpu": "4", "memory": "8Gi", "ephemeral-storage": "100Gi"})

# Upstream pkg/apis/core/validation: glibc reads at most 3 nameservers; the search list limits
# are the "expanded DNS config" ones (GA since 1.28), and any single search domain longer than a
# DNS subdomain (253) makes some glibc versions abort, so the kubelet drops it.
MAX_DNS_NAMESERVERS = 3
MAX_DNS_SEARCH_PATHS = 32
MAX_DNS_SEARCH_LIST_CHARS = 2048
_MAX_SEARCH_DOMAIN = 253
DEFAULT_DNS_OPTIONS = ("ndots:5",)  # upstream defaultDNSOptions

# Linux's nodename is 64 bytes with the terminating NUL: hostnames stop at 63, FQDNs at 64
# (upstream truncatePodHostnameIfNeeded / GetNodenameForKernel).
HOSTNAME_MAX = 63
FQDN_MAX = 64

MANAGED_HOSTS_HEADER = "# Kubernetes-managed hosts file.\n"
MANAGED_HOSTS_HEADER_HOST_NETWORK = "# Kubernetes-managed hosts file (host network).\n"


class PodSpecError(Exception):
    """A pod the kubelet cannot start as specified; ``reason`` is the container waiting reason."""

    reason = CREATE_CONTAINER_CONFIG_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ContainerConfigError(PodSpecError):
    """Generating a container's config failed (waiting reason ``CreateContainerConfigError``)."""

    reason = CREATE_CONTAINER_CONFIG_ERROR


class SandboxConfigError(PodSpecError):
    """Generating the pod sandbox's config failed (``CreatePodSandboxError``, event ``FailedCreatePodSandBox``)."""

    reason = CREATE_POD_SANDBOX_ERROR


# --- $(VAR) expansion -----------------------------------------------------------------------------


def _read_reference(text: str, start: int) -> tuple[str, bool, int]:
    """What follows a ``$`` at ``start - 1``: (text read, whether it names a variable, chars consumed)."""
    head = text[start]
    if head == "$":  # "$$" is an escaped "$"
        return "$", False, 1
    if head == "(":
        close = text.find(")", start + 1)
        if close != -1:
            return text[start + 1 : close], True, close - start + 1
        return "$(", False, 1  # unterminated: kept as is
    return "$" + head, False, 1


def expand(text: str, *contexts: Mapping[str, str]) -> str:
    """Upstream ``expansion.Expand`` with ``MappingFuncFor(*contexts)``: ``$(NAME)`` becomes the
    value of NAME in the first context that has it, or stays ``$(NAME)`` when none does; ``$$`` is
    an escaped ``$`` (so ``$$(X)`` gives ``$(X)``); an unterminated ``$(`` and a ``$`` followed by
    anything else are kept verbatim."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            read, is_var, advance = _read_reference(text, cursor + 1)
            if is_var:
                out.append(_lookup(read, contexts))
            else:
                out.append(read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


def _lookup(name: str, contexts: Sequence[Mapping[str, str]]) -> str:
    for ctx in contexts:
        if name in ctx:
            return ctx[name]
    return f"$({name})"


def expand_args(container: Mapping[str, Any], env: EnvList | Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Upstream ``ExpandContainerCommandAndArgs``: ``command`` and ``args`` with ``$(VAR)``
    references expanded against the container's final environment (``container_env``'s result)."""
    mapping = dict(env)
    command = [expand(as_str(c), mapping) for c in as_list(container.get("command"))]
    args = [expand(as_str(a), mapping) for a in as_list(container.get("args"))]
    return command, args


# --- service links ----------------------------------------------------------------------------------


def _env_name(name: str) -> str:
    """Upstream ``makeEnvVariableName``: upper case, ``-`` to ``_`` (Service names hold no dots)."""
    return name.replace("-", "_").upper()


def _join_host_port(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _service_ip_set(svc: Mapping[str, Any]) -> bool:
    ip = as_str(as_dict(svc.get("spec")).get("clusterIP"))
    return ip not in ("", "None")


def service_env_vars(service: Mapping[str, Any]) -> EnvList:
    """Upstream ``envvars.FromServices`` for one Service, in upstream's order: the
    ``_SERVICE_HOST``/``_SERVICE_PORT[_<NAME>]`` variables, then the Docker-link ones
    (``_PORT``, ``_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]``).  Headless, ExternalName and
    port-less Services give nothing."""
    spec = as_dict(service.get("spec"))
    ports = as_dicts(spec.get("ports"))
    if not _service_ip_set(service) or not ports:
        return []
    ip = as_str(spec.get("clusterIP"))
    prefix = _env_name(name_of(service))
    out: EnvList = [(f"{prefix}_SERVICE_HOST", ip), (f"{prefix}_SERVICE_PORT", str(ports[0].get("port", 0)))]
    for port in ports:
        if as_str(port.get("name")):
            out.append((f"{prefix}_SERVICE_PORT_{_env_name(port['name'])}", str(port.get("port", 0))))
    for i, port in enumerate(ports):
        protocol = as_str(port.get("protocol")) or "TCP"
        number = str(port.get("port", 0))
        url = f"{protocol.lower()}://{_join_host_port(ip, number)}"
        if i == 0:
            out.append((f"{prefix}_PORT", url))
        base = f"{prefix}_PORT_{number}_{protocol.upper()}"
        out.extend([(base, url), (f"{base}_PROTO", protocol.lower()), (f"{base}_PORT", number), (f"{base}_ADDR", ip)])
    return out


def service_env(namespace: str, services: Sequence[Mapping[str, Any]], enable_service_links: bool) -> dict[str, str]:
    """Upstream ``getServiceEnvVarMap``: the link variables of every Service with a cluster IP in
    ``namespace`` (only when ``enable_service_links``) plus ``default/kubernetes`` (always; a
    same-named Service in the pod's own namespace takes its place when links are enabled).
    Services are taken in name order, so when two produce the same variable the later name wins
    (upstream iterates a Go map there)."""
    chosen: dict[str, Mapping[str, Any]] = {}
    for svc in services:
        if not _service_ip_set(svc):
            continue
        name, ns = name_of(svc), namespace_of(svc)
        if ns == "default" and name == "kubernetes":
            chosen.setdefault(name, svc)
        elif ns == namespace and enable_service_links:
            chosen[name] = svc
    out: dict[str, str] = {}
    for name in sorted(chosen):
        out.update(service_env_vars(chosen[name]))
    return out


# --- downward API -------------------------------------------------------------------------------------


def _is_ipv4(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).version == 4
    except ValueError:
        return False


def _is_ipv6(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).version == 6
    except ValueError:
        return False


def _canonical_ip(ip: str) -> str:
    """Go ``net.IP.String()`` of a parsed address (IPv6 compressed), or the text unchanged."""
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


def sort_pod_ips(pod_ips: Sequence[str], host_ips: Sequence[str]) -> list[str]:
    """Upstream ``sortPodIPs``: at most one IP per family, the node's primary family first
    (IPv4 when the node's IPs are unknown)."""
    v6_first = bool(host_ips) and _is_ipv6(host_ips[0])
    primary, secondary = (_is_ipv6, _is_ipv4) if v6_first else (_is_ipv4, _is_ipv6)
    out = [ip for ip in pod_ips if primary(ip)][:1]
    out += [ip for ip in pod_ips if secondary(ip)][:1]
    return out


def _split_subscript(path: str) -> tuple[str, str] | None:
    """Upstream ``SplitMaybeSubscriptedPath``: ``metadata.labels['k']`` -> (``metadata.labels``, ``k``)."""
    if not path.endswith("']"):
        return None
    head, sep, key = path[:-2].partition("['")
    if not sep or not head:
        return None
    return head, key


def format_map(values: Mapping[str, Any]) -> str:
    """Upstream ``fieldpath.FormatMap``: ``key="value"`` lines in key order, Go-quoted."""
    return "\n".join(f"{k}={go_quote(as_str(values[k]))}" for k in sorted(values))


# Labels upstream's ConvertDownwardAPIFieldLabel accepts; the kubelet answers some itself and
# hands the rest to ExtractFieldPathAsString, which refuses spec.restartPolicy and friends.
_CONVERTIBLE_FIELDS = frozenset(
    {
        "metadata.annotations",
        "metadata.labels",
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.serviceAccountName",
        "spec.schedulerName",
        "status.phase",
        "status.hostIP",
        "status.hostIPs",
        "status.podIP",
        "status.podIPs",
    }
)


def field_ref_value(
    pod: Mapping[str, Any], ref: Mapping[str, Any], *, host_ips: Sequence[str], pod_ips: Sequence[str]
) -> str:
    """Upstream ``podFieldSelectorRuntimeValue``: the value of a ``fieldRef`` for ``pod``."""
    version = as_str(ref.get("apiVersion")) or "v1"
    path = as_str(ref.get("fieldPath"))
    if version != "v1":
        raise ContainerConfigError(f"unsupported pod version: {version}")
    meta = as_dict(pod.get("metadata"))
    subscripted = _split_subscript(path)
    if subscripted is not None:
        head, key = subscripted
        if head not in ("metadata.annotations", "metadata.labels"):
            raise ContainerConfigError(f"field label does not support subscript: {path}")
        errs = is_qualified_name(key.lower() if head == "metadata.annotations" else key)
        if errs:
            raise ContainerConfigError(f"invalid key subscript in {path}: {';'.join(errs)}")
        return as_str(as_dict(meta.get(head.split(".")[1])).get(key))
    if path == "spec.host":  # old v1 clients' name for spec.nodeName
        path = "spec.nodeName"
    if path not in _CONVERTIBLE_FIELDS:
        raise ContainerConfigError(f"field label not supported: {path}")
    spec = as_dict(pod.get("spec"))
    ips = sort_pod_ips(pod_ips, host_ips)
    if path == "spec.nodeName":
        return as_str(spec.get("nodeName"))
    if path == "spec.serviceAccountName":
        return as_str(spec.get("serviceAccountName"))
    if path in ("status.hostIP", "status.hostIPs"):
        if not host_ips:
            raise ContainerConfigError("host IP unknown; known addresses: []")
        return _canonical_ip(host_ips[0]) if path == "status.hostIP" else ",".join(map(_canonical_ip, host_ips))
    if path == "status.podIP":
        return ips[0] if ips else ""
    if path == "status.podIPs":
        return ",".join(ips)
    if path in ("metadata.annotations", "metadata.labels"):
        return format_map(as_dict(meta.get(path.split(".")[1])))
    if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return as_str(meta.get(path.split(".")[1]))
    raise ContainerConfigError(f"unsupported fieldPath: {path}")


def _ceil_int(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def _quantity(value: Any) -> Decimal:
    return parse_quantity(value) or Decimal(0)


def _with_allocatable_limits(container: Mapping[str, Any], allocatable: Mapping[str, Any]) -> dict[str, Any]:
    """Upstream ``MergeContainerResourceLimits``: unset or zero cpu/memory/ephemeral-storage
    limits read as the node's allocatable."""
    limits = dict(as_dict(as_dict(container.get("resources")).get("limits")))
    for name in ("cpu", "memory", "ephemeral-storage"):
        if _quantity(limits.get(name)) == 0 and name in allocatable:
            limits[name] = allocatable[name]
    return {**container, "resources": {**as_dict(container.get("resources")), "limits": limits}}


def resource_field_ref_value(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    ref: Mapping[str, Any],
    *,
    allocatable: Mapping[str, Any] = DEFAULT_ALLOCATABLE,
) -> str:
    """Upstream ``containerResourceRuntimeValue`` after ``defaultPodLimitsForDownwardAPI``: a
    container resource divided by ``divisor`` (default 1), rounded up.  CPU is compared in
    millicores, everything else in whole units, as upstream does."""
    target: Mapping[str, Any] = _with_allocatable_limits(container, allocatable)
    wanted = as_str(ref.get("containerName"))
    if wanted:
        spec = as_dict(pod.get("spec"))
        # Upstream defaults the limits of the pod's regular containers only, not init containers.
        found = [
            _with_allocatable_limits(c, allocatable)
            for c in as_dicts(spec.get("containers"))
            if c.get("name") == wanted
        ]
        found += [c for c in as_dicts(spec.get("initContainers")) if c.get("name") == wanted]
        if not found:
            raise ContainerConfigError(f"container {wanted} not found")
        target = found[0]
    divisor = _quantity(ref.get("divisor"))
    if divisor == 0:
        divisor = Decimal(1)
    resource = as_str(ref.get("resource"))
    kind, _, name = resource.partition(".")
    resources = as_dict(target.get("resources"))
    if kind in ("limits", "requests") and (
        name in ("cpu", "memory", "ephemeral-storage") or name.startswith("hugepages-")
    ):
        amount = _quantity(as_dict(resources.get(kind)).get(name))
        if name == "cpu":
            whole, per = _ceil_int(amount * 1000), _ceil_int(divisor * 1000)
        else:
            whole, per = _ceil_int(amount), _ceil_int(divisor)
        return str(-(-whole // per))
    raise ContainerConfigError(f"unsupported container resource : {resource}")


# --- the container environment ----------------------------------------------------------------------


def _secret_text(raw: Any) -> str:
    """A Secret value as the bytes upstream hands the runtime; undecodable bytes survive as
    surrogate escapes, which ``subprocess`` turns back into the same bytes."""
    try:
        data = base64.b64decode(as_str(raw), validate=False)
    except (binascii.Error, ValueError):
        data = b""
    return data.decode("utf-8", errors="surrogateescape")


class _Sources:
    """ConfigMaps and Secrets looked up once per container, with upstream's not-found errors."""

    def __init__(self, configmaps: Mapping[str, Obj], secrets: Mapping[str, Obj]) -> None:
        self._configmaps = configmaps
        self._secrets = secrets

    def configmap(self, name: str, optional: bool) -> Mapping[str, Any] | None:
        obj = self._configmaps.get(name)
        if obj is None:
            if optional:
                return None
            raise ContainerConfigError(f'configmap "{name}" not found')
        return as_dict(obj.get("data"))

    def secret(self, name: str, optional: bool) -> Mapping[str, str] | None:
        obj = self._secrets.get(name)
        if obj is None:
            if optional:
                return None
            raise ContainerConfigError(f'secret "{name}" not found')
        return {k: _secret_text(v) for k, v in as_dict(obj.get("data")).items()}


def container_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    configmaps: Mapping[str, Obj] = _EMPTY,
    secrets: Mapping[str, Obj] = _EMPTY,
    services: Sequence[Mapping[str, Any]] = (),
    host_ips: Sequence[str] = (),
    pod_ips: Sequence[str] = (),
    enable_service_links: bool | None = None,
    allocatable: Mapping[str, Any] = DEFAULT_ALLOCATABLE,
) -> EnvList:
    """Upstream ``makeEnvironmentVariables``: the environment a container starts with.

    ``configmaps`` and ``secrets`` are the pod namespace's objects by name; ``services`` the
    Services of the pod's namespace plus ``default/kubernetes`` (others are ignored);
    ``host_ips`` the node's IPs (primary first); ``pod_ips`` the pod's IPs; ``allocatable`` the
    node's allocatable resources; ``enable_service_links`` overrides the pod's
    ``spec.enableServiceLinks`` (default true).

    Order of evaluation as upstream: ``envFrom`` sources in order, then ``env`` in order (a later
    definition of a name replaces an earlier one, ``value`` is ``$(VAR)``-expanded against what is
    defined so far and then the service variables), then the service variables not already
    defined.  Returns ``(name, value)`` pairs with unique names: defined names in the order they
    were first defined, then service variables (upstream's order is Go map order).  Raises
    :class:`ContainerConfigError` with upstream's message for a missing non-optional ConfigMap,
    Secret or key and for unsupported downward-API fields.
    """
    spec = as_dict(pod.get("spec"))
    namespace = namespace_of(pod)
    links = spec.get("enableServiceLinks") is not False if enable_service_links is None else enable_service_links
    svc_env = service_env(namespace, services, links)
    sources = _Sources(configmaps, secrets)
    env: dict[str, str] = {}

    for source in as_dicts(container.get("envFrom")):
        prefix = as_str(source.get("prefix"))
        values: Mapping[str, Any] | None
        if isinstance(source.get("configMapRef"), dict):
            ref = source["configMapRef"]
            values = sources.configmap(as_str(ref.get("name")), bool(ref.get("optional")))
        elif isinstance(source.get("secretRef"), dict):
            ref = source["secretRef"]
            values = sources.secret(as_str(ref.get("name")), bool(ref.get("optional")))
        else:
            continue
        for key, value in (values or {}).items():
            name = prefix + key
            # Upstream (1.30-1.33) skipped names failing IsRelaxedEnvVarName; valid ConfigMap and
            # Secret keys always pass, so this only guards against unvalidated objects.
            if not is_relaxed_env_var_name(name):
                env[name] = as_str(value)

    for var in as_dicts(container.get("env")):
        name = as_str(var.get("name"))
        value = as_str(var.get("value"))
        if value:
            value = expand(value, env, svc_env)
        elif isinstance(var.get("valueFrom"), dict):
            resolved = _value_from(pod, container, var["valueFrom"], sources, namespace, host_ips, pod_ips, allocatable)
            if resolved is None:
                continue
            value = resolved
        env[name] = value

    return list(env.items()) + [(k, v) for k, v in svc_env.items() if k not in env]


def _value_from(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    source: Mapping[str, Any],
    sources: _Sources,
    namespace: str,
    host_ips: Sequence[str],
    pod_ips: Sequence[str],
    allocatable: Mapping[str, Any],
) -> str | None:
    """One ``valueFrom``; None when an optional reference is missing (the variable is not set)."""
    if isinstance(source.get("fieldRef"), dict):
        return field_ref_value(pod, source["fieldRef"], host_ips=host_ips, pod_ips=pod_ips)
    if isinstance(source.get("resourceFieldRef"), dict):
        return resource_field_ref_value(pod, container, source["resourceFieldRef"], allocatable=allocatable)
    for field_name, kind, lookup in (
        ("configMapKeyRef", "ConfigMap", sources.configmap),
        ("secretKeyRef", "Secret", sources.secret),
    ):
        ref = source.get(field_name)
        if not isinstance(ref, dict):
            continue
        name, key, optional = as_str(ref.get("name")), as_str(ref.get("key")), bool(ref.get("optional"))
        values = lookup(name, optional)
        if values is None:
            return None
        if key not in values:
            if optional:
                return None
            raise ContainerConfigError(f"couldn't find key {key} in {kind} {namespace}/{name}")
        return as_str(values[key])
    return ""


# --- DNS ----------------------------------------------------------------------------------------------


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """Upstream ``parseResolvConf``: (nameservers, search domains, options).  Nameserver lines
    accumulate; the last ``search`` and ``options`` lines win; search domains lose a trailing dot;
    ``#`` comment lines are skipped (``domain`` and ``;`` comments are not understood, as upstream)."""
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.split("\n"):
        trimmed = line.strip()
        if trimmed.startswith("#"):
            continue
        fields = trimmed.split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) >= 2:
            servers.append(fields[1])
        elif fields[0] == "search":
            searches = [s.removesuffix(".") for s in fields[1:]]
        elif fields[0] == "options":
            options = fields[1:]
    return servers, searches, options


def _dedup(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _merge_options(existing: Sequence[str], pod_options: Sequence[Mapping[str, Any]]) -> list[str]:
    """Upstream ``mergeDNSOptions``: by name, the pod's options overriding; kept in first-seen
    order (upstream's order is Go map order)."""
    merged: dict[str, str] = {}
    for text in existing:
        name, _, value = text.partition(":")
        merged[name] = value
    for opt in pod_options:
        merged[as_str(opt.get("name"))] = as_str(opt.get("value"))
    return [f"{k}:{v}" if v else k for k, v in merged.items()]


@dataclass(frozen=True)
class DNSConfig:
    """The CRI ``DNSConfig`` the kubelet hands the runtime, plus the warnings upstream records as
    events (``DNSConfigForming``, ``MissingClusterDNS``)."""

    servers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def render(self) -> str | None:
        """The resolv.conf containerd writes for this config; None when the config is empty, in
        which case the runtime copies the node's own resolv.conf into the sandbox."""
        if not (self.servers or self.searches or self.options):
            return None
        text = ""
        if self.searches:
            text += "search " + " ".join(self.searches) + "\n"
        text += "".join(f"nameserver {s}\n" for s in self.servers)
        if self.options:
            text += "options " + " ".join(self.options) + "\n"
        return text


def _fit_searches(searches: list[str], warnings: list[str]) -> list[str]:
    """Upstream ``formDNSSearchFitsLimits``."""
    exceeded = len(searches) > MAX_DNS_SEARCH_PATHS
    kept = searches[:MAX_DNS_SEARCH_PATHS]
    fitting = [s for s in kept if len(s) <= _MAX_SEARCH_DOMAIN]
    exceeded = exceeded or len(fitting) != len(kept)
    line = len(" ".join(fitting))
    if line > MAX_DNS_SEARCH_LIST_CHARS:
        cut = 0
        while fitting and line - cut > MAX_DNS_SEARCH_LIST_CHARS:
            cut += len(fitting.pop()) + 1
        exceeded = True
    if exceeded:
        warnings.append(
            "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: "
            + " ".join(fitting)
        )
    return fitting


def _fit_servers(servers: list[str], warnings: list[str]) -> list[str]:
    """Upstream ``formDNSNameserversFitsLimits``."""
    if len(servers) <= MAX_DNS_NAMESERVERS:
        return servers
    kept = servers[:MAX_DNS_NAMESERVERS]
    warnings.append(
        "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: "
        + " ".join(kept)
    )
    return kept


def _is_host_network(pod: Mapping[str, Any]) -> bool:
    return bool(as_dict(pod.get("spec")).get("hostNetwork"))


def pod_dns_config(
    pod: Mapping[str, Any],
    *,
    cluster_dns: Sequence[str],
    cluster_domain: str,
    host_resolv_conf: str | None,
    node_ips: Sequence[str] = (),
) -> DNSConfig:
    """Upstream ``Configurer.GetPodDNS``.

    ``host_resolv_conf`` is the text of the kubelet's ``--resolv-conf`` file (None when that flag
    is empty: ``Default`` pods then get ``127.0.0.1``/``::1`` per node IP family and search ``.``).

    - ``ClusterFirst`` (the default; ``Default`` for hostNetwork pods) and
      ``ClusterFirstWithHostNet``: nameservers ``cluster_dns``, search
      ``<ns>.svc.<domain> svc.<domain> <domain>`` followed by the node's search domains (upstream
      appends them; duplicates dropped), options ``ndots:5``.  Without ``cluster_dns`` the pod
      falls back to ``Default`` with a ``MissingClusterDNS`` warning.
    - ``Default``: the node's nameservers, search list and options.
    - ``None``: nothing but ``dnsConfig``.

    ``dnsConfig`` is then merged in (nameservers and searches appended without duplicates,
    options merged by name with the pod's winning) and the result cut to 3 nameservers, 32
    search domains and a 2048-character search line (domains over 253 characters dropped).
    """
    spec = as_dict(pod.get("spec"))
    warnings: list[str] = []
    if host_resolv_conf is None:
        servers: list[str] = []
        searches: list[str] = []
        options: list[str] = []
    else:
        servers, searches, options = parse_resolv_conf(host_resolv_conf)

    policy = as_str(spec.get("dnsPolicy")) or "ClusterFirst"
    if policy == "None":
        servers, searches, options = [], [], []
    else:
        cluster = policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not _is_host_network(pod))
        # Upstream treats an unknown policy as ClusterFirst (after logging an error).
        cluster = cluster or policy not in ("ClusterFirst", "Default")
        if cluster and cluster_dns:
            servers = [_canonical_ip(ip) for ip in cluster_dns]
            if cluster_domain:
                ns = namespace_of(pod)
                searches = _dedup([f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain, *searches])
            options = list(DEFAULT_DNS_OPTIONS)
        else:
            if cluster:
                warnings.append(
                    'kubelet does not have ClusterDNS IP configured and cannot create Pod using "ClusterFirst" '
                    'policy. Falling back to "Default" policy.'
                )
            if host_resolv_conf is None:
                servers += ["::1" if _is_ipv6(ip) else "127.0.0.1" for ip in node_ips] or ["127.0.0.1"]
                searches = ["."]

    if isinstance(spec.get("dnsConfig"), dict):
        config = spec["dnsConfig"]
        servers = _dedup([*servers, *(as_str(s) for s in as_list(config.get("nameservers")))])
        searches = _dedup([*searches, *(as_str(s) for s in as_list(config.get("searches")))])
        options = _merge_options(options, as_dicts(config.get("options")))

    servers = _fit_servers(servers, warnings)
    searches = _fit_searches(searches, warnings)
    return DNSConfig(tuple(servers), tuple(searches), tuple(options), tuple(warnings))


def resolv_conf(
    pod: Mapping[str, Any],
    *,
    cluster_dns: Sequence[str],
    cluster_domain: str,
    host_resolv_conf: str | None,
    node_ips: Sequence[str] = (),
) -> str | None:
    """The pod's /etc/resolv.conf text (see :func:`pod_dns_config`); None means "copy the node's
    resolv.conf", which is what the runtime does with an empty DNS config."""
    return pod_dns_config(
        pod,
        cluster_dns=cluster_dns,
        cluster_domain=cluster_domain,
        host_resolv_conf=host_resolv_conf,
        node_ips=node_ips,
    ).render()


# --- hostname and /etc/hosts --------------------------------------------------------------------------


class PodHostname(NamedTuple):
    """The pod's short hostname and its FQDN (``""`` without ``spec.subdomain``)."""

    hostname: str
    fqdn: str


def _truncate_hostname(pod_name: str, hostname: str) -> str:
    """Upstream ``truncatePodHostnameIfNeeded``."""
    if len(hostname) <= HOSTNAME_MAX:
        return hostname
    truncated = hostname[:HOSTNAME_MAX].rstrip("-.")
    if not truncated:
        raise SandboxConfigError(f"hostname for pod {go_quote(pod_name)} was invalid: {go_quote(hostname)}")
    return truncated


def pod_domain(pod: Mapping[str, Any], *, cluster_domain: str) -> str:
    """``<subdomain>.<namespace>.svc.<cluster domain>``, or ``""`` without ``spec.subdomain``."""
    subdomain = as_str(as_dict(pod.get("spec")).get("subdomain"))
    if not subdomain:
        return ""
    errs = is_dns1123_label(subdomain)
    if errs:
        raise SandboxConfigError(f"pod Subdomain {go_quote(subdomain)} is not a valid DNS label: {';'.join(errs)}")
    return f"{subdomain}.{namespace_of(pod)}.svc.{cluster_domain}"


def pod_hostname(pod: Mapping[str, Any], *, cluster_domain: str) -> PodHostname:
    """Upstream ``GeneratePodHostNameAndDomain``: ``spec.hostname`` or the pod's name, cut to 63
    characters (then trailing ``-`` and ``.`` trimmed), and the FQDN
    ``<hostname>.<subdomain>.<ns>.svc.<cluster domain>`` when ``spec.subdomain`` is set.
    HostNetwork pods share the node's UTS namespace, so their kernel hostname is the node's; this
    is still what their /etc/hosts would name.  Raises :class:`SandboxConfigError` (as upstream,
    the sandbox cannot be configured) for an invalid hostname or subdomain."""
    spec = as_dict(pod.get("spec"))
    name = name_of(pod)
    hostname = name
    explicit = as_str(spec.get("hostname"))
    if explicit:
        errs = is_dns1123_label(explicit)
        if errs:
            raise SandboxConfigError(f"pod Hostname {go_quote(explicit)} is not a valid DNS label: {';'.join(errs)}")
        hostname = explicit
    hostname = _truncate_hostname(name, hostname)
    domain = pod_domain(pod, cluster_domain=cluster_domain)
    return PodHostname(hostname, f"{hostname}.{domain}" if domain else "")


def kernel_hostname(pod: Mapping[str, Any], *, cluster_domain: str) -> str:
    """Upstream ``GetNodenameForKernel``: the name set in the pod's UTS namespace — the FQDN when
    ``setHostnameAsFQDN`` is true and the pod has a subdomain (at most 64 characters, else
    :class:`SandboxConfigError`), otherwise the short hostname."""
    hostname, fqdn = pod_hostname(pod, cluster_domain=cluster_domain)
    if fqdn and as_dict(pod.get("spec")).get("setHostnameAsFQDN") is True:
        if len(fqdn) > FQDN_MAX:
            raise SandboxConfigError(
                f"failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long "
                f"({FQDN_MAX} characters is the max, {len(fqdn)} characters requested)"
            )
        return fqdn
    return hostname


def _host_alias_entries(aliases: Sequence[Mapping[str, Any]]) -> str:
    """Upstream ``hostsEntriesFromHostAliases``: one line per alias, hostnames tab-separated."""
    if not aliases:
        return ""
    lines = "".join(
        f"{as_str(a.get('ip'))}\t{chr(9).join(as_str(h) for h in as_list(a.get('hostnames')))}\n" for a in aliases
    )
    return "\n# Entries added by HostAliases.\n" + lines


def hosts_file(
    pod: Mapping[str, Any], *, pod_ips: Sequence[str], cluster_domain: str, node_hosts_file: str = ""
) -> str:
    """The pod's /etc/hosts, as upstream ``ensureHostsFile`` writes it.

    Pod-network pods get the managed file: header, IPv4/IPv6 localhost lines, one line per pod IP
    (``<ip>\\t<fqdn>\\t<hostname>`` with a subdomain, else ``<ip>\\t<hostname>``), then the
    ``hostAliases`` section.  HostNetwork pods get a host-network header, ``node_hosts_file``
    verbatim and the ``hostAliases`` section.  (Upstream mounts no hosts file at all for a
    pod-network pod that has no IP yet; that decision is the caller's.)
    """
    aliases = _host_alias_entries(as_dicts(as_dict(pod.get("spec")).get("hostAliases")))
    if _is_host_network(pod):
        return MANAGED_HOSTS_HEADER_HOST_NETWORK + node_hosts_file + aliases
    hostname, fqdn = pod_hostname(pod, cluster_domain=cluster_domain)
    text = (
        MANAGED_HOSTS_HEADER
        + "127.0.0.1\tlocalhost\n"
        + "::1\tlocalhost ip6-localhost ip6-loopback\n"
        + "fe00::0\tip6-localnet\n"
        + "fe00::0\tip6-mcastprefix\n"
        + "fe00::1\tip6-allnodes\n"
        + "fe00::2\tip6-allrouters\n"
    )
    names = f"{fqdn}\t{hostname}" if fqdn else hostname
    text += "".join(f"{ip}\t{names}\n" for ip in pod_ips)
    return text + aliases
