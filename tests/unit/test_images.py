"""Image resolution: Kubernetes command/args semantics over each image's ENTRYPOINT and CMD, table-driven."""

from __future__ import annotations

import pytest

from kubewire.agents.kubelet import images
from kubewire.agents.kubelet.images import Program, Unsupported, repository, resolve

PY = "/venv/bin/python"
MACHINE = {
    "sh": "/bin/sh",
    "sleep": "/usr/bin/sleep",
    "curl": "/usr/bin/curl",
    "bash": "/bin/bash",
    "/bin/sh": "/bin/sh",
    "/bin/bash": "/bin/bash",
    "/usr/bin/env": "/usr/bin/env",
    "python3": "/usr/bin/python3",
}
BUSYBOX = {**MACHINE, "busybox": "/bin/busybox"}


def builtin(module: str, *rest: str) -> tuple[str, ...]:
    return (PY, "-m", f"kubewire.workloads.{module}", *rest)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("nginx", "docker.io/library/nginx"),
        ("nginx:1.27", "docker.io/library/nginx"),
        ("docker.io/library/nginx:1.27", "docker.io/library/nginx"),
        ("index.docker.io/library/nginx@sha256:" + "a" * 64, "docker.io/library/nginx"),
        ("nginx:1.27@sha256:" + "b" * 64, "docker.io/library/nginx"),
        ("mirror.gcr.io/library/busybox", "docker.io/library/busybox"),
        ("public.ecr.aws/docker/library/alpine:3.20", "docker.io/library/alpine"),
        ("hashicorp/http-echo:1.0", "docker.io/hashicorp/http-echo"),
        ("k8s.gcr.io/pause:3.9", "registry.k8s.io/pause"),
        ("gcr.io/google_containers/pause-amd64:3.0", "registry.k8s.io/pause-amd64"),
        ("localhost:5000/agnhost:2.52", "localhost:5000/agnhost"),
        ("registry.k8s.io/e2e-test-images/agnhost:2.52", "registry.k8s.io/e2e-test-images/agnhost"),
    ],
)
def test_repository(image: str, expected: str) -> None:
    assert repository(image) == expected


CASES: list[tuple[str, str, list[str], list[str], dict[str, str], str]] = [
    # (name, image, command, args, machine, expected argv / builtin / reason)
    (
        "echo-basic staging",
        "gcr.io/k8s-staging-gateway-api/echo-basic:v20240412-v1.0.0-394-g40c666fd",
        [],
        [],
        MACHINE,
        "echo",
    ),
    ("echo-basic prod", "registry.k8s.io/gateway-api/echo-basic:v1.5.1", [], [], MACHINE, "echo"),
    (
        "echo-basic conformance path",
        "registry.k8s.io/gateway-api/conformance/echo-basic:v1.6.0",
        [],
        [],
        MACHINE,
        "echo",
    ),
    (
        "ingress echoserver",
        "gcr.io/k8s-staging-ingressconformance/echoserver:v20221109-7ee2f3e",
        [],
        [],
        MACHINE,
        "echo",
    ),
    ("tutorial echoserver", "registry.k8s.io/echoserver:1.10", [], [], MACHINE, "echo"),
    ("agnhost default cmd", "registry.k8s.io/e2e-test-images/agnhost:2.52", [], [], MACHINE, "agnhost"),
    ("http-echo", "hashicorp/http-echo", [], ["-text=hi"], MACHINE, "httpecho"),
    ("nginx", "nginx:1.27", [], [], MACHINE, "nginx"),
    ("pause", "registry.k8s.io/pause:3.10", [], [], MACHINE, "pause"),
    ("old pause", "k8s.gcr.io/pause-amd64:3.1", [], [], MACHINE, "pause"),
]


@pytest.mark.parametrize(("name", "image", "command", "args", "machine", "expected"), CASES, ids=[c[0] for c in CASES])
def test_builtin_images(
    name: str, image: str, command: list[str], args: list[str], machine: dict[str, str], expected: str
) -> None:
    program = resolve(image, command, args, PY, machine.get)
    assert isinstance(program, Program), program
    assert program.builtin == expected
    assert program.argv[:3] == builtin(expected)


@pytest.mark.parametrize(
    ("image", "command", "args", "argv"),
    [
        # echo images: the mode flag selects the upstream behaviour.
        ("registry.k8s.io/gateway-api/echo-basic:v1.5.1", [], [], builtin("echo")),
        ("gcr.io/k8s-staging-ingressconformance/echoserver:v1", [], [], builtin("echo", "--mode=ingress")),
        ("k8s.gcr.io/echoserver:1.4", [], [], builtin("echo", "--mode=tutorial")),
        # agnhost: ENTRYPOINT /agnhost, CMD pause; args replace the CMD; command /agnhost keeps working.
        ("registry.k8s.io/e2e-test-images/agnhost:2.52", [], [], builtin("agnhost", "pause")),
        (
            "registry.k8s.io/e2e-test-images/agnhost:2.52",
            [],
            ["netexec", "--http-port=8080", "--udp-port=8081"],
            builtin("agnhost", "netexec", "--http-port=8080", "--udp-port=8081"),
        ),
        (
            "registry.k8s.io/e2e-test-images/agnhost:2.52",
            ["/agnhost", "serve-hostname"],
            ["--port", "9376"],
            builtin("agnhost", "serve-hostname", "--port", "9376"),
        ),
        ("k8s.gcr.io/e2e-test-images/agnhost:2.39", ["/agnhost", "porter"], [], builtin("agnhost", "porter")),
        ("registry.k8s.io/e2e-test-images/agnhost:2.52", ["agnhost-2", "pause"], [], builtin("agnhost", "pause")),
        # The pre-agnhost images map onto agnhost's subcommands.
        (
            "gcr.io/kubernetes-e2e-test-images/netexec:1.1",
            [],
            ["--http-port=8080"],
            builtin("agnhost", "netexec", "--http-port=8080"),
        ),
        ("k8s.gcr.io/serve_hostname:1.1", [], [], builtin("agnhost", "serve-hostname")),
        # http-echo: args go to /http-echo.
        (
            "hashicorp/http-echo:1.0",
            [],
            ["-text=hello", "-listen=:8080"],
            builtin("httpecho", "-text=hello", "-listen=:8080"),
        ),
        ("hashicorp/http-echo", ["/http-echo"], ["-text=x"], builtin("httpecho", "-text=x")),
        # nginx: docker-entrypoint.sh execs its arguments; "nginx ..." is the built-in.
        ("nginx", [], [], builtin("nginx", "-g", "daemon off;")),
        (
            "docker.io/library/nginx:1.27-alpine",
            ["nginx", "-g", "daemon off;"],
            [],
            builtin("nginx", "-g", "daemon off;"),
        ),
        ("nginx", ["/docker-entrypoint.sh"], ["nginx", "-g", "daemon off;"], builtin("nginx", "-g", "daemon off;")),
        ("nginxinc/nginx-unprivileged:1.27", [], [], builtin("nginx", "--port=8080", "-g", "daemon off;")),
        ("registry.k8s.io/pause:3.10", [], [], builtin("pause")),
        # Commands that are not the image's program run on the machine.
        ("nginx", [], ["sh", "-c", "echo hi"], ("/bin/sh", "-c", "echo hi")),
        (
            "registry.k8s.io/e2e-test-images/agnhost:2.52",
            ["/bin/sh", "-c", "sleep 1"],
            [],
            ("/bin/sh", "-c", "sleep 1"),
        ),
        ("busybox", ["sleep", "3600"], [], ("/usr/bin/sleep", "3600")),
        ("busybox:1.36", [], [], ("/bin/sh",)),
        ("alpine:3.20", [], [], ("/bin/sh",)),
        ("debian:bookworm", [], [], ("/bin/bash",)),
        ("ubuntu", ["bash", "-c", "true"], [], ("/bin/bash", "-c", "true")),
        # An image's default shell that the machine lacks falls back to sh (which exits at once, as the image would).
        ("nicolaka/netshoot", [], [], ("/bin/sh",)),
        # curlimages/curl: /entrypoint.sh prepends curl to options, execs anything else.
        ("curlimages/curl:8.8.0", [], ["-sS", "http://svc"], ("/usr/bin/curl", "-sS", "http://svc")),
        ("curlimages/curl", [], ["sh", "-c", "curl x"], ("/bin/sh", "-c", "curl x")),
        ("curlimages/curl", [], [], ("/usr/bin/curl",)),
        # Any image with a command runs that command; absolute paths are kept.
        ("python:3.12", ["python3", "-m", "http.server"], [], ("/usr/bin/python3", "-m", "http.server")),
        ("quay.io/example/tool:v1", ["/usr/bin/env"], ["A=1"], ("/usr/bin/env", "A=1")),
        ("example/app", ["./run.sh"], [], ("./run.sh",)),
    ],
)
def test_argv(image: str, command: list[str], args: list[str], argv: tuple[str, ...]) -> None:
    program = resolve(image, command, args, PY, MACHINE.get)
    assert isinstance(program, Program), program
    assert program.argv == argv


def test_busybox_applets_run_through_busybox_when_installed() -> None:
    program = resolve("busybox", ["wget", "-qO-", "http://svc"], [], PY, BUSYBOX.get)
    assert isinstance(program, Program)
    assert (program.argv, program.builtin) == (("/bin/busybox", "wget", "-qO-", "http://svc"), "")
    program = resolve("alpine", [], [], PY, BUSYBOX.get)
    assert isinstance(program, Program) and program.argv == ("/bin/busybox", "sh")
    # Without busybox on the machine, the machine's own commands run.
    program = resolve("busybox", ["sh", "-c", "true"], [], PY, MACHINE.get)
    assert isinstance(program, Program) and program.argv == ("/bin/sh", "-c", "true")
    # debian-style images never go through busybox.
    program = resolve("debian", ["sh"], [], PY, BUSYBOX.get)
    assert isinstance(program, Program) and program.argv == ("/bin/sh",)


@pytest.mark.parametrize(
    ("image", "command", "args", "reason", "fragment"),
    [
        (
            "example.com/team/app:1.0",
            [],
            [],
            "ErrImageNeverPull",
            'Container image "example.com/team/app:1.0" is not present',
        ),
        ("example/app", [], ["--serve"], "ErrImageNeverPull", "pull policy of Never"),
        (
            "example/app",
            ["frobnicate"],
            [],
            "RunContainerError",
            'exec: "frobnicate": executable file not found in $PATH',
        ),
        ("busybox", ["nosuchtool"], [], "RunContainerError", "executable file not found in $PATH"),
        (
            "busybox",
            ["/opt/tool"],
            [],
            "RunContainerError",
            'exec: "/opt/tool": stat /opt/tool: no such file or directory',
        ),
        (
            "registry.k8s.io/e2e-test-images/agnhost:2.52",
            [],
            ["nettest"],
            "RunContainerError",
            'no "nettest" subcommand',
        ),
        ("gcr.io/k8s-staging-gateway-api/echo-advanced:v1", [], [], "ErrImageNeverPull", "echo-basic"),
    ],
)
def test_unsupported(image: str, command: list[str], args: list[str], reason: str, fragment: str) -> None:
    result = resolve(image, command, args, PY, MACHINE.get)
    assert isinstance(result, Unsupported), result
    assert result.reason == reason
    assert fragment in result.message


def test_env_and_builtin_field() -> None:
    program = resolve("nginx", [], [], PY, MACHINE.get)
    assert isinstance(program, Program)
    assert program.env["NGINX_VERSION"]
    machine = resolve("busybox", ["sleep", "1"], [], PY, MACHINE.get)
    assert isinstance(machine, Program) and machine.builtin == "" and dict(machine.env) == {}


def test_longest_name_wins_and_mirrors_match() -> None:
    assert images.match("gcr.io/k8s-staging-ingressconformance/echoserver:v1") is not images.match(
        "k8s.gcr.io/echoserver:1.4"
    )
    mirrored = images.match("harbor.corp.example/dockerhub/library/nginx:1.27")
    assert mirrored is not None and mirrored.workload == "nginx"
    assert images.match("quay.io/someone/unrelated") is None


def test_agnhost_subcommands_match_the_workload() -> None:
    from kubewire.workloads import agnhost

    assert images.AGNHOST_SUBCOMMANDS == agnhost.SUBCOMMANDS


def test_supported_table_is_documentable() -> None:
    summary = images.supported_summary()
    assert "agnhost" in summary and "echo-basic" in summary and "http-echo" in summary
    assert all(spec.title and spec.names for spec in images.SUPPORTED)
