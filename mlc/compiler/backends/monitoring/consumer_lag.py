"""The consumer-lag alert that a Kafka ingestion and a stream endpoint share: the group has been
more than `limit` messages behind its topic, summed over its partitions, for `hold` seconds.

One partition far behind and the others at 0 is the group behind; two partitions each just
over half the limit are too (the sum counts, not any one partition). The promtool scenarios
hold both, the lag at half the limit and at 0 (healthy), and a lag over the limit for one step
less than `hold` (not yet).
"""

from __future__ import annotations

from . import promql
from .alerts import Scenario, Series
from .rules import _by


class ConsumerLag:
    """The lag alert's expression and its promtool scenarios, for one consumer group."""

    def __init__(self, metric, labels: dict[str, str], limit: int, hold: int):
        self.name = promql.series(metric)
        self.labels, self.limit, self.hold = labels, limit, hold
        self.step = 60 if hold >= 60 else max(1, hold)
        self.samples = hold // self.step + 5

    @property
    def expr(self) -> str:
        lag = promql.selector(self.name, self.labels)
        return f"sum by ({_by(self.labels)}) ({lag}) > {promql.number(self.limit)}"

    def behind(self, *per_partition: int) -> Scenario:
        return Scenario(tuple(Series(self.name, {**self.labels, "partition": str(i)},
                                     f"{n}+0x{self.samples}")
                              for i, n in enumerate(per_partition)),
                        (self.samples - 1) * self.step, interval_seconds=self.step)

    def unhealthy(self) -> tuple:
        half = self.limit // 2 + 1
        return ((self.behind(self.limit * 2), self.labels),
                (self.behind(half, half), self.labels))

    def healthy(self) -> tuple[Scenario, ...]:
        out = [self.behind(self.limit // 2), self.behind(0)]
        if self.hold >= self.step:  # behind, but for one step less than `hold`: not yet
            k = self.samples - self.hold // self.step
            out.append(Scenario((Series(self.name, {**self.labels, "partition": "0"},
                                        f"0+0x{k - 1} {2 * self.limit}+0x{self.samples - k}"),),
                                (self.samples - 1) * self.step, interval_seconds=self.step))
        return tuple(out)
