"""The resident libnftables seam against the real kernel, beside the ``nft`` command it replaces.

One network namespace made (and always deleted) by the test, ``kw-test-libnft-<pid>``; the host's own
namespace is never touched — and the test checks that.  Needs root, ``ip``, ``nft`` and libnftables.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from kubewire.host.nft import LibNft, NftCli, NftError

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and nftables need root"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 is not installed"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nftables (nft) is not installed"),
]

NS = f"kw-test-libnft-{os.getpid()}"
SCRIPT = """add table ip kw-libnft-test
add map ip kw-libnft-test m { type ipv4_addr . inet_proto . inet_service : verdict; }
add chain ip kw-libnft-test c
add element ip kw-libnft-test m { 10.96.0.1 . tcp . 80 : goto c }
"""


@pytest.fixture
def netns() -> Iterator[str]:
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        yield NS
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)


def _host_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], check=True, capture_output=True, text=True).stdout


def test_libnft_applies_lists_and_refuses_like_nft(netns: str) -> None:
    host_before = _host_tables()

    async def scenario() -> None:
        lib = LibNft()
        try:
            await lib.apply(SCRIPT, netns)
            listed = await lib.list_table("ip", "kw-libnft-test", netns)
            assert "10.96.0.1 . tcp . 80 : goto c" in listed
            # The same table, read by the nft command through nsenter: same text.
            assert await NftCli().list_table("ip", "kw-libnft-test", netns) == listed
            # A transaction the kernel refuses leaves nothing of itself, and says why as nft does.
            bad = "add element ip kw-libnft-test m { 10.96.0.2 . tcp . 80 : goto c }\nadd element ip kw-libnft-test m { 10.96.0.3 . tcp . 80 : goto absent }\n"
            with pytest.raises(NftError) as lib_err:
                await lib.apply(bad, netns)
            with pytest.raises(NftError) as cli_err:
                await NftCli().apply(bad, netns)
            # nft's own words; the command adds only its input's location ("/dev/stdin:2:35-54: ").
            lib_first = str(lib_err.value).splitlines()[0]
            assert lib_first == "Error: Could not process rule: No such file or directory"
            assert str(cli_err.value).splitlines()[0].endswith(lib_first)
            assert "10.96.0.2" not in await lib.list_table("ip", "kw-libnft-test", netns)
            # The context sees changes made behind its back (its cache follows the ruleset generation).
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    netns,
                    "nft",
                    "add element ip kw-libnft-test m { 10.96.0.4 . udp . 53 : goto c }",
                ],
                check=True,
            )
            await lib.apply("delete element ip kw-libnft-test m { 10.96.0.4 . udp . 53 }\n", netns)
            assert "10.96.0.4" not in await lib.list_table("ip", "kw-libnft-test", netns)
            with pytest.raises(NftError, match="refusing"):
                await lib.apply(SCRIPT, "default")
        finally:
            lib.close()

    asyncio.run(scenario())
    assert _host_tables() == host_before
