"""The Corefile parser: kubeadm's Corefile, the options kubewire acts on, and CoreDNS's errors."""

from __future__ import annotations

import pytest

from kubewire.agents.dns.corefile import DEFAULT, CorefileError, listen_address, parse
from kubewire.api.addons import COREFILE


def test_kubeadm_corefile() -> None:
    (server,) = parse(COREFILE % {"domain": "cluster.local"}).servers
    assert server.zones == (".",) and server.port == 53
    k = server.kubernetes
    assert k is not None
    assert k.zones == ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")
    assert k.pods == "insecure" and k.ttl == 5 and k.fallthrough == ("in-addr.arpa.", "ip6.arpa.")
    assert server.forward is not None and server.forward.to == ("/etc/resolv.conf",)
    assert server.cache is not None and server.cache.success_ttl == 30 and server.cache.denial_ttl == 30
    assert (server.health, server.ready, server.prometheus) == (":8080", ":8181", ":9153")
    assert "loadbalance" in server.plugins and "reload" in server.plugins
    assert parse(DEFAULT).servers[0].kubernetes == k


def test_options_env_comments_and_several_blocks() -> None:
    text = """# two servers
    cluster.local:1053 {
        kubernetes {
            pods verified
            ttl 30   # seconds
            namespaces default kube-system
        }
    }
    .:1053 {
        forward . 192.0.2.53:5353 [2001:db8::1]:53 {$UPSTREAM}
        cache 60 {
            success 1000 20
            denial 100 10
        }
        prometheus 127.0.0.1:9253
    }
    """
    config = parse(text, env={"UPSTREAM": "198.51.100.1"})
    first, second = config.servers
    assert first.zones == ("cluster.local.",) and first.port == 1053
    assert first.kubernetes is not None and first.kubernetes.zones == ("cluster.local.",)
    assert first.kubernetes.pods == "verified" and first.kubernetes.ttl == 30
    assert first.kubernetes.namespaces == ("default", "kube-system")
    assert second.forward is not None and second.forward.to == ("192.0.2.53:5353", "[2001:db8::1]:53", "198.51.100.1")
    assert second.cache is not None and (second.cache.success_ttl, second.cache.denial_ttl) == (20, 10)
    assert listen_address(second.prometheus) == ("127.0.0.1", 9253)
    assert listen_address(":8080") == ("", 8080)
    assert config.server_for(1053) == config.servers


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            ".:53 {\n  kubernates cluster.local\n}\n",
            "Corefile:2 - Error during parsing: Unknown directive 'kubernates'",
        ),
        (
            ".:53 {\n  kubernetes {\n    pods sometimes\n  }\n}\n",
            "pods: value must be one of disabled, insecure, verified",
        ),
        (".:53 {\n  kubernetes {\n    ttl 7200\n  }\n}\n", "ttl must be in range [0, 3600]: 7200"),
        (".:53 {\n  forward .\n}\n", "Wrong argument count"),
        (".:53 {\n  errors\n", "missing closing brace"),
        ("}\n", "Unexpected '}'"),
        (".:99999 {\n}\n", "invalid port '99999'"),
        ("", "no server blocks"),
    ],
)
def test_what_coredns_refuses(text: str, message: str) -> None:
    with pytest.raises(CorefileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(text, env={})
