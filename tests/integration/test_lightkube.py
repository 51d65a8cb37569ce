"""lightkube's async client (what kubewire uses for real clusters) lists, watches and writes."""

from __future__ import annotations

import asyncio

from lightkube import AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Service
from lightkube.types import PatchType

from tests.conftest import Cluster


async def _exercise(cluster: Cluster) -> None:
    client = AsyncClient(KubeConfig.from_file(str(cluster.kubeconfig)), field_manager="lightkube-test")
    try:
        await client.create(ConfigMap(metadata=ObjectMeta(name="lk", namespace="default"), data={"a": "1"}))
        names = [cm.metadata.name async for cm in client.list(ConfigMap, namespace="default")]
        assert "lk" in names
        seen: list[tuple[str, str]] = []

        async def watch() -> None:
            async for op, obj in client.watch(ConfigMap, namespace="default", fields={"metadata.name": "lk"}):
                seen.append((op, (obj.data or {}).get("a", "")))
                if op == "DELETED":
                    return

        task = asyncio.create_task(watch())
        await asyncio.sleep(0)
        await client.patch(ConfigMap, "lk", {"data": {"a": "2"}}, namespace="default", patch_type=PatchType.MERGE)
        applied = ConfigMap(metadata=ObjectMeta(name="lk", namespace="default"), data={"a": "3"})
        await client.apply(applied, force=True)
        await client.delete(ConfigMap, "lk", namespace="default")
        await asyncio.wait_for(task, timeout=20)
        assert seen[-1][0] == "DELETED" and ("MODIFIED", "3") in seen
        svc = Service.from_dict(
            {"metadata": {"name": "lk-svc", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}}
        )
        created = await client.create(svc)
        assert created.spec.ports[0].targetPort == 80 and created.spec.type == "ClusterIP"
    finally:
        await client.close()


def test_lightkube_round_trip(cluster: Cluster) -> None:
    asyncio.run(asyncio.wait_for(_exercise(cluster), timeout=60))
