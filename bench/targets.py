"""The issue's targets and the original service's figures, beside ours."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    """One target: which figure, its bound, and the original service's figure.

    Attributes:
        label: What the target is about.
        figure: The key of our figure in the results.
        bound: The target's bound.
        at_least: True if the figure must reach ``bound``; False if it must stay under.
        original: The original service's figure, as text.
        unit: The unit of ``bound`` and of our figure.
    """

    label: str
    figure: str
    bound: float
    at_least: bool
    original: str
    unit: str

    def met(self, value: float) -> bool:
        """Whether ``value`` meets the target."""
        if math.isnan(value):
            return False
        return value >= self.bound if self.at_least else value <= self.bound


TARGETS = (
    Target("e2e execute-async -> run_completed, median", "e2e", 30, False, "~430", "ms"),
    Target("sync execute round trip, median", "sync", 15, False, "83-141", "ms"),
    Target("burst of 20, throughput", "burst20", 100, True, "6-9", "runs/s"),
    Target("stream delivery lag (Redis), median", "lag_redis", 5, False, "~50", "ms"),
    Target("engine overhead, 6 steps, median", "overhead6", 50, False, "-", "µs/step"),
    Target("engine overhead, 100 steps, median", "overhead100", 50, False, "-", "µs/step"),
    Target("cold start api (import), median", "cold_api", 250, False, "-", "ms"),
    Target("cold start stream (import), median", "cold_stream", 250, False, "-", "ms"),
    Target("cold start executor (import), median", "cold_executor", 400, False, "-", "ms"),
    Target("storage writes per step", "writes_per_step", 2, False, "-", "writes"),
    Target("cost per million steps", "cost", 2, False, "SFN Standard $25", "$"),
)
# Figures that have no target but an original to compare with.
COMPARED = (
    ("executor time per run (server), median", "executor", "~80", "ms"),
    ("queue wait (server), median", "queue", "~290", "ms"),
)


def _value(text: float) -> str:
    return "-" if math.isnan(text) else f"{text:.3g}" if text < 100 else f"{text:.0f}"


def verdicts(values: dict[str, float]) -> list[dict[str, Any]]:
    """Each target with our figure and whether it is met."""
    rows = []
    for target in TARGETS:
        value = values.get(target.figure, float("nan"))
        sign = ">=" if target.at_least else "<="
        rows.append({"target": target.label, "ours": value, "unit": target.unit,
                     "original": target.original, "bound": f"{sign} {target.bound:g}",
                     "met": target.met(value)})
    for label, figure, original, unit in COMPARED:
        rows.append({"target": label, "ours": values.get(figure, float("nan")), "unit": unit,
                     "original": original, "bound": "-", "met": None})
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    """The verdicts as a text table."""
    width = max(len(row["target"]) for row in rows)
    head = f"{'target':<{width}}  {'ours':>8} {'unit':<8} {'original':>16} {'target':>9}  met"
    lines = ["Targets (local stack, this machine)", head, "-" * len(head)]
    for row in rows:
        met = {True: "yes", False: "NO", None: ""}[row["met"]]
        lines.append(f"{row['target']:<{width}}  {_value(row['ours']):>8} {row['unit']:<8} "
                     f"{row['original']:>16} {row['bound']:>9}  {met}")
    return "\n".join(lines)
