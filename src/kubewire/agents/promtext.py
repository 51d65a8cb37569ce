"""Prometheus text exposition for the agents' ``/metrics`` endpoints (kube-proxy, cluster DNS).

One histogram type shared by the daemons, cheap enough for a DNS server's per-query hot path:
``observe`` finds the bucket by bisection and bumps one counter; the cumulative ``le`` counts
Prometheus expects are summed only when rendered.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence


class Histogram:
    """A Prometheus histogram over fixed upper bounds."""

    __slots__ = ("buckets", "count", "counts", "total")

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # per bucket, not cumulative; the last is +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.counts[bisect.bisect_left(self.buckets, value)] += 1

    def render(self, name: str, help_text: str, labels: str = "", header: bool = True) -> list[str]:
        """The ``_bucket``/``_sum``/``_count`` lines (with ``# HELP``/``# TYPE`` unless ``header`` is
        false, for the second and later label sets of one metric)."""
        sep = "," if labels else ""
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"] if header else []
        running = 0
        for upper, n in zip(self.buckets, self.counts, strict=False):
            running += n
            lines.append(f'{name}_bucket{{{labels}{sep}le="{upper:g}"}} {running}')
        lines.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        suffix = f"{{{labels}}}" if labels else ""
        lines += [f"{name}_sum{suffix} {self.total}", f"{name}_count{suffix} {self.count}"]
        return lines


def exponential(start: float, factor: float, count: int) -> tuple[float, ...]:
    """Prometheus's ExponentialBuckets."""
    return tuple(start * factor**i for i in range(count))
