"""Summaries of samples: median, p90, min, max and count, and the tables they print in."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Summary:
    """One figure's samples, summarised.

    Attributes:
        name: What was measured.
        unit: The samples' unit (``ms``, ``µs/step``, ``runs/s``, ...).
        n: How many samples.
        median: The median.
        p90: The 90th percentile, nearest rank (the ceil(0.9 n)-th smallest).
        min: The smallest sample.
        max: The largest sample.
    """

    name: str
    unit: str
    n: int
    median: float
    p90: float
    min: float
    max: float

    def as_dict(self) -> dict[str, object]:
        """The summary as plain JSON-ready data."""
        return asdict(self)


def nearest_rank(ordered: list[float], fraction: float) -> float:
    """The ``fraction`` percentile of sorted ``ordered`` by nearest rank."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarize(name: str, unit: str, samples: Iterable[float]) -> Summary:
    """Summarise ``samples`` (NaN and None are dropped); an empty set gives NaNs."""
    ordered = sorted(s for s in samples if s is not None and not math.isnan(s))
    if not ordered:
        nan = float("nan")
        return Summary(name, unit, 0, nan, nan, nan, nan)
    return Summary(name, unit, len(ordered), statistics.median(ordered),
                   nearest_rank(ordered, 0.9), ordered[0], ordered[-1])


def _number(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(title: str, rows: list[Summary]) -> str:
    """``rows`` as a fixed-width text table under ``title``."""
    width = max([len(row.name) for row in rows] + [24])
    head = f"{'figure':<{width}}  {'unit':<9}{'median':>9}{'p90':>9}{'min':>9}{'max':>9}{'n':>6}"
    lines = [title, head, "-" * len(head)]
    for row in rows:
        cells = "".join(f"{_number(v):>9}" for v in (row.median, row.p90, row.min, row.max))
        lines.append(f"{row.name:<{width}}  {row.unit:<9}{cells}{row.n:>6}")
    return "\n".join(lines)
