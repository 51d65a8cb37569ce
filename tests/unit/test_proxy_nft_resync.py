"""The periodic resync keeps session affinity and still lands exactly on the full state."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from kubewire.dataplane.proxy.model import ProxySnapshot
from kubewire.dataplane.proxy.nft import Compiled, full_ruleset, resync_ruleset, state_of
from tests.unit.test_proxy_nft import ep, old_and_new, snap, sp


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(old_and_new())
def test_resync_equals_full_sync(pair: tuple[ProxySnapshot, ProxySnapshot]) -> None:
    old, new = pair
    before = state_of(full_ruleset(old))
    script = resync_ruleset(Compiled(old), Compiled(new))
    assert "delete table" not in script
    assert state_of(script, before) == state_of(full_ruleset(new))


def test_resync_keeps_affinity_unless_an_entry_may_be_stale() -> None:
    a = snap(sp("a", endpoints=(ep("10.244.1.2"), ep("10.244.1.3")), affinity_timeout=60))
    same = resync_ruleset(Compiled(a), Compiled(a))
    lines = same.splitlines()
    assert "flush map ip kubewire-proxy affinity" not in lines
    assert "flush map ip kubewire-proxy backends_tcp" in lines
    fewer = snap(sp("a", endpoints=(ep("10.244.1.2"),), affinity_timeout=60))
    assert "flush map ip kubewire-proxy affinity" in resync_ruleset(Compiled(a), Compiled(fewer)).splitlines()
