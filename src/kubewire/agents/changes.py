"""Which Services changed since each consumer last looked: the change tracker between watches and
rebuilds (design principle 3), shared by kube-proxy and the cluster DNS.

Watch handlers on Services and EndpointSlices record the (namespace, name) of the Service each event
concerns — an EndpointSlice's through its ``kubernetes.io/service-name`` label, both the old and
the new owner of a relabelled slice — into one set per consumer (the proxy keeps one per address
family, the DNS server one for its zone).  A consumer takes its set when it rebuilds, so a rebuild
costs what changed, not the cluster's size.  The slice informer gets an index by owning Service, so
a consumer reads a Service's slices without a scan.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

from kubewire.api.discovery import ServiceKey, object_key, slice_service
from kubewire.store.informer import Handlers, Informer, Obj

BY_SERVICE = "service"  # the slice informer's index: "namespace/name" of the owning Service


def _by_service(obj: Obj) -> list[str]:
    key = slice_service(obj)
    return [f"{key[0]}/{key[1]}"] if key is not None else []


class ServiceChanges:
    """Per-consumer sets of changed Services, fed by the handlers :meth:`watch` installs."""

    def __init__(self, services: Informer, slices: Informer, consumers: Iterable[Hashable]) -> None:
        self.services = services
        self.slices = slices
        slices.add_indexer(BY_SERVICE, _by_service)
        self._pending: dict[Hashable, set[ServiceKey]] = {c: set() for c in consumers}

    def watch(
        self, on_service: Callable[[], None] = lambda: None, on_slice: Callable[[Obj], None] = lambda _: None
    ) -> None:
        """Record every later event (call once the informers have synced and the consumers have
        built from them); ``on_service`` / ``on_slice`` run after each Service / slice event is recorded
        (``on_slice`` with the slice as it now is)."""

        def service(*objs: Obj) -> None:
            self._note(object_key(objs[-1]))
            on_service()

        def slice_(*objs: Obj) -> None:
            for obj in objs:
                self._note(slice_service(obj))
            on_slice(objs[-1])

        self.services.add_handlers(Handlers(service, service, service))
        self.slices.add_handlers(Handlers(slice_, slice_, slice_))

    def _note(self, key: ServiceKey | None) -> None:
        if key is not None:
            for keys in self._pending.values():
                keys.add(key)

    def take(self, consumer: Hashable) -> set[ServiceKey]:
        """The Services changed since ``consumer`` last took its set (which starts empty again)."""
        keys, self._pending[consumer] = self._pending[consumer], set()
        return keys

    def service(self, key: ServiceKey) -> Obj | None:
        return self.services.get(f"{key[0]}/{key[1]}")

    def slices_of(self, key: ServiceKey) -> list[Obj]:
        return self.slices.by_index(BY_SERVICE, f"{key[0]}/{key[1]}")
