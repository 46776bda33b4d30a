"""What a step does when it fails: retry it, and where the run goes after the last try.

A step's YAML keys ``retry``, ``timeout`` and ``on_error`` (checked by ``model``) are
read here into plain values the runner acts on. The retry loop itself is the runner's:
its state (which attempt, when the step's deadline passes, when to wake) lives in the
run's checkpoint, so a wait longer than a Lambda invocation survives in the queue.
No retry library can keep that state across processes; the arithmetic is all that
would be shared, and it is three lines.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The kinds a StepError can have (see ``errors.StepError``).
ERROR_KINDS = frozenset(
    {"network", "timeout", "http_status", "api", "template", "expression", "config", "crash"}
)
STATUS_CLASS = re.compile(r"[1-5]xx")
DEFAULT_RETRY_ON: tuple[str | int, ...] = ("network", "timeout", 408, 429, "5xx")


def status_matches(status: int, patterns: list[int | str] | tuple[int | str, ...]) -> bool:
    """Whether ``status`` is one of ``patterns`` (numbers, or classes like ``'5xx'``)."""
    for pattern in patterns:
        if isinstance(pattern, int) and pattern == status:
            return True
        if isinstance(pattern, str) and STATUS_CLASS.fullmatch(pattern):
            if status // 100 == int(pattern[0]):
                return True
    return False


def accepts(accept: Any, status: int) -> bool:
    """Whether an http step with ``accept_status: accept`` completes on ``status``."""
    if accept == "any":
        return True
    if accept is None:
        return status < 400
    return status_matches(status, accept)


@dataclass(frozen=True)
class Retry:
    """A step's retry policy, with the defaults of ``model.RetryPolicy`` filled in."""

    attempts: int = 1
    initial: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 300.0
    jitter: bool = True
    on: tuple[str | int, ...] = DEFAULT_RETRY_ON

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Retry:
        """The policy of a step's mapping; one attempt when it has no ``retry``."""
        raw = config.get("retry")
        if not isinstance(raw, Mapping):
            return cls()
        backoff = raw.get("backoff") or {}
        return cls(
            attempts=int(raw.get("attempts", 3)),
            initial=float(backoff.get("initial", 1.0)),
            multiplier=float(backoff.get("multiplier", 2.0)),
            max_delay=float(backoff.get("max", 300.0)),
            jitter=bool(raw.get("jitter", True)),
            on=tuple(raw.get("on", DEFAULT_RETRY_ON)),
        )

    def covers(self, kind: str, status_code: int | None) -> bool:
        """Whether a failure of ``kind`` (with ``status_code``, if any) is worth a retry."""
        if kind in self.on:
            return True
        statuses = [p for p in self.on if not (isinstance(p, str) and p in ERROR_KINDS)]
        return status_code is not None and status_matches(status_code, statuses)

    def delay(self, failed_attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after attempt ``failed_attempt`` (1-based) failed."""
        delay = min(self.max_delay, self.initial * self.multiplier ** (failed_attempt - 1))
        if self.jitter:
            delay *= (rng or random).uniform(0.5, 1.0)
        return delay


def on_error(config: Mapping[str, Any]) -> tuple[str, str | None]:
    """What the run does when the step fails for good.

    One of ``("fail", None)``, ``("continue", None)`` or ``("goto", step_id)``.
    """
    value = config.get("on_error", "fail")
    if isinstance(value, Mapping):
        return "goto", str(value["goto"])
    return str(value), None


def goto_target(config: Mapping[str, Any]) -> str | None:
    """The step ``on_error: {goto: ...}`` names, if it names one."""
    value = config.get("on_error")
    target = value.get("goto") if isinstance(value, Mapping) else None
    return target if isinstance(target, str) else None
