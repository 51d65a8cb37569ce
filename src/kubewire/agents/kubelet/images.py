"""Image resolution: what a container spec runs, since kubewire pulls no images.

Kubernetes semantics decide the command line first: ``command`` replaces the image's ENTRYPOINT,
``args`` replace its CMD, a ``command`` without ``args`` drops the CMD, and ``args`` alone go to the
ENTRYPOINT (``kubectl explain pod.spec.containers.command``). ``SUPPORTED`` records, per image
family, the ENTRYPOINT and CMD its upstream Dockerfile declares, so that rule is applied faithfully.

The resulting command line then runs one of two ways:

- when it starts with the image's own program (``/agnhost``, ``/echo-basic``, ``nginx``, ``/pause``
  ...), as a built-in workload: ``python -m kubewire.workloads.<module> [mode flags] <rest>`` (the
  zygote forks these pre-warmed), or for ``coredns`` kubewire's own DNS program, ``python -m
  kubewire.agents.dns.app`` (a process of its own, told where the API is: ``Program.api``);
- otherwise as a command of this machine (``sh -c ...``, ``sleep 3600``, ``curl ...``): bare names
  are looked up with ``which``, absolute paths kept. busybox and alpine containers run busybox
  applets through the machine's ``busybox`` binary when it is installed (``busybox wget ...``); their
  shell scripts find other commands on the machine's PATH.

Images are matched by repository, ignoring tag, digest and registry: the last path components are
compared with each family's names (``nginx``, ``docker.io/library/nginx:1.27``, ``mirror.gcr.io/
library/nginx@sha256:...`` and a private mirror's ``harbor.corp/library/nginx`` are all nginx), the
longest match winning (``ingressconformance/echoserver`` beats ``echoserver``).

Failures are reported the way a container runtime would: an unknown image without a command is
``ErrImageNeverPull`` (the image is "not present" and kubewire never pulls), and a command that is
not on the machine is ``RunContainerError`` with runc's wording (``exec: "foo": executable file not
found in $PATH``); so is an agnhost subcommand kubewire does not implement. Machine commands run
for every image, even distroless ones that have no shell (a superset of what a real node allows).
``echo-advanced`` (Istio's echo app, used by the mesh conformance profile) is not built in.
Pure: the only lookups go through the ``which`` passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

IMAGE_NEVER_PULL = "ErrImageNeverPull"
RUN_CONTAINER_ERROR = "RunContainerError"
WORKLOADS_PACKAGE = "kubewire.workloads"

# agnhost subcommands kubewire implements (kept equal to kubewire.workloads.agnhost.SUBCOMMANDS by a test).
AGNHOST_SUBCOMMANDS = ("connect", "liveness", "netexec", "pause", "porter", "serve-hostname")

# Applets of busybox that containers commonly call directly; with busybox installed these run as
# ``busybox <applet>`` so a busybox container behaves like one even where the machine lacks the tool.
BUSYBOX_APPLETS = frozenset(
    [
        "arp",
        "ash",
        "awk",
        "base64",
        "basename",
        "cat",
        "chmod",
        "chown",
        "cp",
        "cut",
        "date",
        "dd",
        "df",
        "dirname",
        "dmesg",
        "dnsdomainname",
        "du",
        "echo",
        "env",
        "expr",
        "false",
        "find",
        "free",
        "grep",
        "gunzip",
        "gzip",
        "head",
        "hexdump",
        "hostname",
        "httpd",
        "id",
        "ifconfig",
        "ip",
        "ipcalc",
        "kill",
        "killall",
        "less",
        "ln",
        "ls",
        "md5sum",
        "mkdir",
        "mktemp",
        "more",
        "mv",
        "nc",
        "netstat",
        "nslookup",
        "od",
        "ping",
        "ping6",
        "printenv",
        "printf",
        "ps",
        "pwd",
        "readlink",
        "realpath",
        "rm",
        "rmdir",
        "route",
        "sed",
        "seq",
        "sh",
        "sha1sum",
        "sha256sum",
        "sleep",
        "sort",
        "stat",
        "tail",
        "tar",
        "tee",
        "telnet",
        "test",
        "timeout",
        "top",
        "touch",
        "tr",
        "traceroute",
        "traceroute6",
        "true",
        "udhcpc",
        "uname",
        "uniq",
        "uptime",
        "usleep",
        "vi",
        "watch",
        "wc",
        "wget",
        "which",
        "whoami",
        "xargs",
        "yes",
        "zcat",
    ]
)

# Registry host aliases (Docker Hub spellings and mirrors; the old Kubernetes registries).
_REGISTRY_ALIASES = {
    "index.docker.io": "docker.io",
    "registry-1.docker.io": "docker.io",
    "registry.hub.docker.com": "docker.io",
    "mirror.gcr.io": "docker.io",
    "k8s.gcr.io": "registry.k8s.io",
}
_PREFIX_ALIASES = (
    ("public.ecr.aws/docker/library/", "docker.io/library/"),
    ("gcr.io/google-containers/", "registry.k8s.io/"),
    ("gcr.io/google_containers/", "registry.k8s.io/"),
    ("us.gcr.io/k8s-artifacts-prod/", "registry.k8s.io/"),
    ("eu.gcr.io/k8s-artifacts-prod/", "registry.k8s.io/"),
    ("asia.gcr.io/k8s-artifacts-prod/", "registry.k8s.io/"),
)


@dataclass(frozen=True)
class Program:
    """What to exec for a container."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    builtin: str
    api: bool = False  # a cluster component that watches the API (the kubelet tells it where)


@dataclass(frozen=True)
class Unsupported:
    """Why a container cannot start: ``reason`` is the container's waiting reason, ``message`` its message."""

    reason: str
    message: str


@dataclass(frozen=True)
class ImageSpec:
    """One supported image family: which repositories, what its Dockerfile declares, what runs it.

    ``names`` are repository path suffixes (``nginx``, ``hashicorp/http-echo``). ``workload`` is the
    built-in module, or "" for images whose programs are this machine's commands. ``programs`` are the
    first words that mean "the image's own program"; ``mode`` are arguments kubewire adds after the
    module to select the right behaviour. ``wrapper`` marks an ENTRYPOINT script that just execs its
    arguments (``exec "$@"``, as docker-entrypoint.sh does); ``dash_program`` is the program such a
    script prepends when the first argument is an option (curlimages/curl's ``curl``).
    """

    names: tuple[str, ...]
    title: str
    workload: str = ""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    programs: tuple[str, ...] = ()
    mode: tuple[str, ...] = ()
    wrapper: bool = False
    dash_program: str = ""
    busybox: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    api: bool = False


SUPPORTED: tuple[ImageSpec, ...] = (
    ImageSpec(
        names=("echo-basic",),
        title="Gateway API echo-basic (registry.k8s.io/gateway-api/echo-basic, gcr.io/k8s-staging-gateway-api/echo-basic)",
        workload="echo",
        entrypoint=("/echo-basic",),
        programs=("/echo-basic", "echo-basic"),
    ),
    ImageSpec(
        names=("ingressconformance/echoserver", "k8s-staging-ingressconformance/echoserver"),
        title="Ingress conformance echoserver (gcr.io/k8s-staging-ingressconformance/echoserver)",
        workload="echo",
        entrypoint=("/echoserver",),
        programs=("/echoserver", "echoserver"),
        mode=("--mode=ingress",),
    ),
    ImageSpec(
        names=("echoserver",),
        title="tutorial echoserver (registry.k8s.io/echoserver, k8s.gcr.io/echoserver), port 8080",
        workload="echo",
        cmd=("/usr/local/bin/run.sh",),
        programs=("/usr/local/bin/run.sh", "run.sh", "nginx", "/usr/sbin/nginx"),
        mode=("--mode=tutorial",),
    ),
    ImageSpec(
        names=("agnhost", "agnhost-amd64", "agnhost-arm64"),
        title="agnhost (registry.k8s.io/e2e-test-images/agnhost): " + ", ".join(AGNHOST_SUBCOMMANDS),
        workload="agnhost",
        entrypoint=("/agnhost",),
        cmd=("pause",),
        programs=("/agnhost", "agnhost", "/agnhost-2", "agnhost-2"),
    ),
    ImageSpec(
        names=("netexec", "netexec-amd64"),
        title="netexec (the pre-agnhost e2e image)",
        workload="agnhost",
        entrypoint=("/netexec",),
        programs=("/netexec", "netexec"),
        mode=("netexec",),
    ),
    ImageSpec(
        names=("serve_hostname", "serve_hostname-amd64", "serve-hostname"),
        title="serve_hostname (the pre-agnhost e2e image), port 9376",
        workload="agnhost",
        entrypoint=("/serve_hostname",),
        programs=("/serve_hostname", "serve_hostname", "serve-hostname"),
        mode=("serve-hostname",),
    ),
    ImageSpec(
        names=("porter", "porter-amd64"),
        title="porter (the pre-agnhost e2e image)",
        workload="agnhost",
        entrypoint=("/porter",),
        programs=("/porter", "porter"),
        mode=("porter",),
    ),
    ImageSpec(
        names=("http-echo",),
        title="hashicorp/http-echo, port 5678",
        workload="httpecho",
        entrypoint=("/http-echo",),
        programs=("/http-echo", "http-echo"),
    ),
    ImageSpec(
        names=("nginx",),
        title="nginx (the welcome page on port 80)",
        workload="nginx",
        entrypoint=("/docker-entrypoint.sh",),
        cmd=("nginx", "-g", "daemon off;"),
        programs=("nginx", "/usr/sbin/nginx", "nginx-debug", "/usr/sbin/nginx-debug"),
        wrapper=True,
        env={"NGINX_VERSION": "1.27.5"},
    ),
    ImageSpec(
        names=("nginx-unprivileged", "nginxinc/nginx-unprivileged"),
        title="nginxinc/nginx-unprivileged (the welcome page on port 8080)",
        workload="nginx",
        entrypoint=("/docker-entrypoint.sh",),
        cmd=("nginx", "-g", "daemon off;"),
        programs=("nginx", "/usr/sbin/nginx", "nginx-debug", "/usr/sbin/nginx-debug"),
        mode=("--port=8080",),
        wrapper=True,
        env={"NGINX_VERSION": "1.27.5"},
    ),
    ImageSpec(
        names=("coredns", "coredns/coredns"),
        title="CoreDNS (registry.k8s.io/coredns/coredns): kubewire's cluster DNS server, -conf Corefile",
        workload="kubewire.agents.dns.app",
        entrypoint=("/coredns",),
        programs=("/coredns", "coredns"),
        api=True,
    ),
    ImageSpec(
        names=("pause", "pause-amd64", "pause-arm64"),
        title="pause (registry.k8s.io/pause)",
        workload="pause",
        entrypoint=("/pause",),
        programs=("/pause", "pause"),
    ),
    ImageSpec(names=("busybox",), title="busybox (default command: sh)", cmd=("sh",), busybox=True),
    ImageSpec(names=("alpine",), title="alpine (default command: /bin/sh)", cmd=("/bin/sh",), busybox=True),
    ImageSpec(
        names=("curlimages/curl",),
        title="curlimages/curl (default command: curl)",
        entrypoint=("/entrypoint.sh",),
        cmd=("curl",),
        wrapper=True,
        dash_program="curl",
    ),
    ImageSpec(names=("nicolaka/netshoot", "netshoot"), title="nicolaka/netshoot (default command: zsh)", cmd=("zsh",)),
    ImageSpec(names=("jessie-dnsutils",), title="e2e jessie-dnsutils (default command: sh)", cmd=("sh",)),
    ImageSpec(names=("debian",), title="debian (default command: bash)", cmd=("bash",)),
    ImageSpec(names=("ubuntu",), title="ubuntu (default command: /bin/bash)", cmd=("/bin/bash",)),
    ImageSpec(names=("fedora",), title="fedora (default command: /bin/bash)", cmd=("/bin/bash",)),
    ImageSpec(names=("centos", "rockylinux", "almalinux"), title="centos/rockylinux/almalinux", cmd=("/bin/bash",)),
)


def repository(image: str) -> str:
    """The canonical repository of an image reference: registry aliases folded, tag and digest dropped.

    ``nginx:1.27`` -> ``docker.io/library/nginx``; ``k8s.gcr.io/pause:3.9`` -> ``registry.k8s.io/pause``.
    """
    ref = image.strip().split("@", 1)[0]
    colon, slash = ref.rfind(":"), ref.rfind("/")
    if colon > slash:
        ref = ref[:colon]
    parts = ref.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry, path = parts[0].lower(), "/".join(parts[1:])
    else:
        registry, path = "docker.io", ref
    registry = _REGISTRY_ALIASES.get(registry, registry)
    if registry == "docker.io" and "/" not in path:
        path = "library/" + path
    name = f"{registry}/{path.lower()}"
    for old, new in _PREFIX_ALIASES:
        if name.startswith(old):
            name = new + name[len(old) :]
    return name


def match(image: str) -> ImageSpec | None:
    """The image family of ``image``: the longest name that ends its repository path, first in table order."""
    path = repository(image).split("/", 1)[1].split("/")
    best: ImageSpec | None = None
    best_len = 0
    for spec in SUPPORTED:
        for name in spec.names:
            parts = name.split("/")
            if len(parts) > best_len and path[-len(parts) :] == parts:
                best, best_len = spec, len(parts)
    return best


def supported_summary() -> str:
    """One line per supported image family, for documentation and error messages."""
    return "\n".join(f"- {spec.title}" for spec in SUPPORTED)


def _never_pull(image: str) -> Unsupported:
    builtins = "echo-basic, the ingress and tutorial echoservers, agnhost, http-echo, nginx, coredns and pause"
    return Unsupported(
        IMAGE_NEVER_PULL,
        f'Container image "{image}" is not present with pull policy of Never (kubewire runs no images: it runs '
        f"built-in workloads for {builtins}, busybox/alpine/debian-style images with a command, or any image "
        f"whose container sets a command)",
    )


def _not_found(argv0: str) -> Unsupported:
    detail = (
        f"stat {argv0}: no such file or directory" if argv0.startswith("/") else "executable file not found in $PATH"
    )
    return Unsupported(
        RUN_CONTAINER_ERROR,
        f'failed to create containerd task: exec: "{argv0}": {detail} (kubewire runs container commands on this '
        "machine)",
    )


def _effective(spec: ImageSpec, command: Sequence[str], args: Sequence[str]) -> list[str]:
    """ENTRYPOINT/CMD/command/args -> the command line the container runs (Kubernetes + Docker rules)."""
    argv = [*command, *args] if command else [*spec.entrypoint, *(args if args else spec.cmd)]
    if spec.wrapper and spec.entrypoint and argv[: len(spec.entrypoint)] == list(spec.entrypoint):
        argv = argv[len(spec.entrypoint) :]
        if spec.dash_program and (not argv or argv[0].startswith("-")):
            argv = [spec.dash_program, *argv]
    return argv


def resolve(
    image: str, command: Sequence[str], args: Sequence[str], python: str, which: Callable[[str], str | None]
) -> Program | Unsupported:
    """Turn a container's image, command and args into the program to exec (see the module docstring)."""
    spec = match(image)
    if spec is None:
        if not command:
            return _never_pull(image)
        return _machine(list(command) + list(args), which, busybox=False, env={})
    argv = _effective(spec, command, args)
    if not argv:
        return _never_pull(image)
    if spec.workload and argv[0] in spec.programs:
        rest = argv[1:]
        if spec.workload == "agnhost" and not spec.mode:
            subcommand = rest[0] if rest and not rest[0].startswith("-") else ""
            if subcommand and subcommand not in AGNHOST_SUBCOMMANDS:
                return Unsupported(
                    RUN_CONTAINER_ERROR,
                    f'kubewire\'s built-in agnhost has no "{subcommand}" subcommand (it has: '
                    f"{', '.join(AGNHOST_SUBCOMMANDS)}); set a command to run something else",
                )
        # A dotted workload is a kubewire component of its own (the DNS server), not a kubewire.workloads module.
        module = spec.workload if "." in spec.workload else f"{WORKLOADS_PACKAGE}.{spec.workload}"
        return Program((python, "-m", module, *spec.mode, *rest), dict(spec.env), spec.workload, spec.api)
    defaulted = not command and not args and not spec.entrypoint
    program = _machine(argv, which, busybox=spec.busybox, env=spec.env)
    if isinstance(program, Unsupported) and defaulted and argv[0] not in ("sh", "/bin/sh"):
        # An image's default shell (zsh, bash) may be missing here; a shell that exits at once is what it ran.
        return _machine(["sh", *argv[1:]], which, busybox=spec.busybox, env=spec.env)
    return program


def _machine(
    argv: list[str], which: Callable[[str], str | None], *, busybox: bool, env: Mapping[str, str]
) -> Program | Unsupported:
    """A command line run as this machine's command (busybox applets through busybox when asked and present)."""
    argv0 = argv[0]
    name = argv0.rsplit("/", 1)[-1]
    if busybox and name in BUSYBOX_APPLETS:
        busybox_path = which("busybox")
        if busybox_path:
            return Program((busybox_path, name, *argv[1:]), dict(env), "")
    if "/" in argv0 and not argv0.startswith("/"):
        return Program(tuple(argv), dict(env), "")  # relative to the working directory: exec decides
    found = which(argv0)
    if not found:
        return _not_found(argv0)
    return Program((argv0 if argv0.startswith("/") else found, *argv[1:]), dict(env), "")
