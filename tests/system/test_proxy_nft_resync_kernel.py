"""The periodic resync loads in the real kernel and keeps session-affinity entries."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from kubewire.dataplane.proxy.nft import Compiled, resync_ruleset
from tests.unit.test_proxy_nft import ep, snap, sp

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nftables is not installed"),
]


def test_resync_in_the_kernel_keeps_affinity_and_swaps_chains() -> None:
    ns = f"kw-test-nft-rs-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:

        def nft(*args: str, script: str | None = None) -> str:
            done = subprocess.run(
                ["ip", "netns", "exec", ns, "nft", *args], input=script, text=True, capture_output=True, timeout=30
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        a = snap(
            sp("a", endpoints=(ep("10.244.1.2"), ep("10.244.1.3")), affinity_timeout=60),
            sp("b", "10.96.0.6", endpoints=(ep("10.244.1.4"),)),
        )
        b = snap(
            sp("a", endpoints=(ep("10.244.1.2"), ep("10.244.1.3")), affinity_timeout=60),
            sp("c", "10.96.0.7", endpoints=(ep("10.244.1.4"), ep("10.244.1.5"), ep("10.244.1.6"))),
        )
        before, after = Compiled(a), Compiled(b)
        nft("-f", "-", script=before.full())
        entry = "{ 10.244.0.9 . 10.96.0.5 . tcp . 80 : 10.244.1.2 . 8080 }"
        nft("add", "element", "ip", "kubewire-proxy", "affinity", entry)
        nft("-f", "-", script=resync_ruleset(before, after))
        assert "10.244.0.9" in nft("list", "map", "ip", "kubewire-proxy", "affinity")
        chains = nft("list", "chains", "ip")
        assert "chain svc_3" in chains and "chain svc_1" not in chains
        assert "10.96.0.7" in nft("list", "map", "ip", "kubewire-proxy", "service_ips")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
