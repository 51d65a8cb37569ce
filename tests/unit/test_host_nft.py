"""The nft seam: namespaces kubewire does not own are refused; the fake records and fails on demand."""

from __future__ import annotations

import pytest

from kubewire.host.nft import FakeNft, NftError, _argv


def test_argv_enters_owned_namespaces_only() -> None:
    assert _argv("", "-f", "-") == ["nft", "-f", "-"]
    assert _argv("kw-c-node-n1", "-f", "-")[:2] == ["nsenter", "--net=/run/netns/kw-c-node-n1"]
    with pytest.raises(NftError, match="refusing"):
        _argv("default", "-f", "-")


async def test_fake_records_scripts_and_fails_on_demand() -> None:
    nft = FakeNft()
    await nft.apply("add table ip t", "kw-c-node-n1")
    nft.fail_next = "Error: Could not process rule: No such file or directory"
    with pytest.raises(NftError, match="No such file"):
        await nft.apply("add element ip t s { 1 }", "kw-c-node-n1")
    await nft.apply("add table ip u")
    assert nft.scripts == [("kw-c-node-n1", "add table ip t"), ("", "add table ip u")]
    with pytest.raises(NftError):
        await nft.apply("x", "other")
