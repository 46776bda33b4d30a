"""The soak: many runs through random faults, every one accounted for.

``SOAK_RUNS`` runs (default ``DEFAULT_RUNS``, 500, the size the suite runs) of five small
workflows go through a private run queue that four executor "containers" deliver
from, as Lambda's event source would, while a seeded RNG (``SOAK_SEED``, printed)
plans for each run: deliveries of its message twice, a crash at a random write, a
throttled write, a slow http step, an invocation short of time. ``SOAK_FAULTS``
(comma-separated: duplicate, crash, throttle, slow, short) narrows the kinds. A seed
repeats the plan, not the threads' interleaving.

At the end every run must have ended as its workflow says (completed, or failed for
the one that calls a broken endpoint), keep the invariants of ``check_run``, and
have run a step twice only if a fault struck in the documented window. The counts
are reported as a ``SoakReport`` warning: pytest shows warnings in its summary, and
under xdist that is the one place a passing test's text reaches ``make test``'s output.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from stepstream.store import FINISHED
from stepstream_local.stack import LocalStack
from tests.faults.conftest import workflow_yaml
from tests.support.faults import (
    Delivery,
    Fault,
    OwnExecutor,
    executor_for,
    run_message,
    run_problems,
)
from tests.support.servers import MockHttpServer, RecordedRequest, Reply, json_reply

# On a 2-core machine 500 runs take about three minutes with their checks, on one xdist
# worker while the other takes the rest of the suite. SOAK_RUNS=50 gives a quick look.
DEFAULT_RUNS = 500
FAULT_KINDS = ("duplicate", "crash", "throttle", "slow", "short")
CONTAINERS = 4
BATCH_SIZE = 5
PRODUCERS = 3
LEASE_SECONDS = 1.0
# Chances, per run, of each fault; "short" is per delivered batch.
CHANCE = {"duplicate": 0.25, "crash": 0.25, "throttle": 0.25, "slow": 0.5, "short": 0.15}
# Where a crash may strike: (write point, after the write).
CRASH_POINTS = [("claim", True), ("events", False), ("events", True), ("progress", False),
                ("progress", True), ("finish", False), ("finish", True), ("terminal", False),
                ("terminal", True), ("release", True)]
THROTTLE_POINTS = ["claim", "events", "progress", "finish", "terminal", "release"]
# An invocation "short of time" has this long: less than an http step without a
# timeout may take, so such a step is handed on to the queue.
SHORT_INVOCATION_SECONDS = 20.0
# Time allowed per run, on top of 120 s, before pytest-timeout stops the soak.
SECONDS_PER_RUN = 1.2
# The soak ends when nothing was delivered for this long (a run left stuck).
IDLE_SECONDS = 5.0

WORKFLOWS = {
    # name: (steps, expected status)
    "call": ("""
        - id: start
          type: trigger
        - id: call
          type: http
          method: POST
          url: "{base}/effect"
          body: {{order: "{{trigger.body.order}}"}}
        - id: tell
          type: notify
          channel: log
          message: "called: {{call.status_code}}"
        """, "completed"),
    "two_calls": ("""
        - id: start
          type: trigger
        - id: first
          type: http
          method: POST
          url: "{base}/effect"
          timeout: 2
        - id: decide
          type: condition
          condition: "{{trigger.body.n}} > 5"
          on_true: big
          on_false: small
        - id: big
          type: notify
          channel: log
          message: big
        - id: small
          type: notify
          channel: log
          message: small
        - id: second
          type: http
          method: POST
          url: "{base}/effect"
        """, "completed"),
    "slow": ("""
        - id: start
          type: trigger
        - id: wait
          type: http
          url: "{base}/slow?delay={{trigger.body.delay}}"
          timeout: 0.6
          on_error: continue
        - id: tell
          type: notify
          channel: log
          message: "waited"
        """, "completed"),
    "broken": ("""
        - id: start
          type: trigger
        - id: call
          type: http
          url: "{base}/fail"
          retry: {{attempts: 2, backoff: {{initial: 0.05}}, jitter: false}}
        - id: never
          type: notify
          channel: log
          message: "not reached"
        """, "failed"),
    "local": ("""
        - id: start
          type: trigger
        - id: decide
          type: condition
          condition: "{{trigger.body.n}} > 5"
          on_true: big
          on_false: small
        - id: big
          type: notify
          channel: log
          message: "big {{trigger.body.n}}"
        - id: small
          type: notify
          channel: log
          message: "small {{trigger.body.n}}"
        """, "completed"),
}


class SoakReport(UserWarning):
    """The soak's counts, shown in pytest's warnings summary."""


@dataclass
class SoakRun:
    """One run of the soak and what was planned for it."""

    run_id: str
    workflow: str
    expected: str
    faults: list[Fault] = field(default_factory=list)
    duplicates: int = 0
    slow: bool = False

    @property
    def struck(self) -> list[Fault]:
        """The planned faults that fired."""
        return [fault for fault in self.faults if fault.fired]


@dataclass
class Counts:
    """What the soak did, counted across its containers' threads."""

    deliveries: int = 0
    records: int = 0
    redeliveries: int = 0
    crashed_batches: int = 0
    failed_records: int = 0
    short_batches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, delivery: Delivery, short: bool) -> None:
        """Count one delivered batch."""
        with self.lock:
            self.deliveries += 1
            self.records += len(delivery.messages)
            self.redeliveries += sum(
                int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")) > 1
                for m in delivery.messages)
            self.crashed_batches += delivery.crashed
            self.failed_records += len(delivery.failed) if not delivery.crashed else 0
            self.short_batches += short


def soak_settings() -> tuple[int, int, frozenset[str]]:
    """SOAK_RUNS, SOAK_SEED (a fresh one if unset) and SOAK_FAULTS."""
    runs = int(os.environ.get("SOAK_RUNS") or DEFAULT_RUNS)
    seed = int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(2**31))
    kinds = frozenset(filter(None, os.environ.get("SOAK_FAULTS", ",".join(FAULT_KINDS))
                             .split(",")))
    unknown = kinds - set(FAULT_KINDS)
    assert not unknown, f"SOAK_FAULTS: unknown kinds {sorted(unknown)}"
    return runs, seed, kinds


def soak_timeout() -> float:
    """The soak's own time limit: the suite's 120 s is for one test, not for hundreds of runs."""
    runs, _seed, _kinds = soak_settings()
    return 120 + SECONDS_PER_RUN * runs


def _slow(request: RecordedRequest) -> Reply:
    delay = float(request.query.get("delay", ["0"])[0])
    return Reply(200, b'{"slow": true}', {"Content-Type": "application/json"}, delay=delay)


@pytest.fixture
def world() -> Iterator[MockHttpServer]:
    """The soak's outside world: an effect endpoint, a slow one and a broken one."""
    with MockHttpServer() as server:
        server.respond_with("POST", "/effect", lambda request: json_reply(200, {"ok": True}))
        server.respond_with("GET", "/slow", _slow)
        server.route("GET", "/fail", status=500, json={"error": "broken"})
        yield server


class Soak:
    """Plans the runs, delivers the queue from ``CONTAINERS`` threads, checks the end."""

    def __init__(self, world: MockHttpServer, runs: int, seed: int,
                 kinds: frozenset[str]) -> None:
        self.world = world
        self.size = runs
        self.rng = random.Random(seed)
        self.kinds = kinds
        self.own = OwnExecutor.create(f"soak-{uuid.uuid4().hex[:6]}", LEASE_SECONDS)
        self.runs: list[SoakRun] = []
        self.counts = Counts()
        self.stopping = threading.Event()
        self.last_delivery = time.monotonic()
        self.timers: list[threading.Timer] = []
        self.ended: set[str] = set()
        self.dead_lettered: set[str] = set()
        self.errors: list[Exception] = []

    def chance(self, kind: str) -> bool:
        """Whether a fault of ``kind`` is planned this time."""
        return kind in self.kinds and self.rng.random() < CHANCE[kind]

    def register(self) -> dict[str, str]:
        """Register the soak's workflows against ``world``; their ids by name."""
        base = self.world.base_url
        return {name: str(self.own.engine.register_workflow(
                    workflow_yaml(steps.format(base=base)))["workflow_id"])
                for name, (steps, _expected) in WORKFLOWS.items()}

    def plan(self) -> list[dict[str, Any]]:
        """What each run gets, drawn in order from the seeded RNG (before any thread runs)."""
        plans = []
        for order in range(self.size):
            name = self.rng.choice(sorted(WORKFLOWS))
            slow = name == "slow" and self.chance("slow")
            faults = []
            if self.chance("crash"):
                point, after = self.rng.choice(CRASH_POINTS)
                faults.append(Fault(point, "crash", after=after, skip=self.rng.choice([0, 0, 1])))
            if self.chance("throttle"):
                faults.append(Fault(self.rng.choice(THROTTLE_POINTS), "throttle",
                                    skip=self.rng.choice([0, 0, 1])))
            duplicate = self.rng.choice([0, 0, 1, 2]) if self.chance("duplicate") else None
            data = {"order": order, "n": self.rng.randrange(10),
                    "delay": self.rng.choice([0.3, 0.8, 1.5]) if slow else 0.01}
            plans.append({"workflow": name, "slow": slow, "faults": faults,
                          "duplicate": duplicate, "data": data})
        return plans

    def start(self, workflows: dict[str, str], plan: dict[str, Any]) -> SoakRun:
        """Create one run, arm its faults, send its message (twice, if planned)."""
        name = plan["workflow"]
        run_id = self.own.engine.create_run(workflows[name], plan["data"], None,
                                            "queued")["run_id"]
        run = SoakRun(run_id, name, WORKFLOWS[name][1], slow=plan["slow"])
        for fault in plan["faults"]:
            fault.run_id = run_id
            run.faults.append(self.own.faults.add(fault))
        self.own.queue.send(run_message(run_id))
        if plan["duplicate"] is not None:
            run.duplicates = 1
            self.own.queue.send(run_message(run_id), delay=plan["duplicate"])
        return run

    def container(self, seed: int) -> None:
        """One Lambda container: its own copy of the executor module, delivering batches."""
        module = executor_for(self.own.engine)
        rng = random.Random(seed)
        while not self.stopping.is_set():
            try:
                self.deliver_once(module, rng)
            except Exception as exc:  # noqa: BLE001 - reported by the test, not by a dead thread
                self.errors.append(exc)
                self.stopping.set()

    def deliver_once(self, module: Any, rng: random.Random) -> None:
        """Receive one batch and invoke the executor with it, as the event source does."""
        queue = self.own.queue
        self.dead_letters()
        messages = queue.receive(most=BATCH_SIZE, wait=1)
        if not messages:
            return
        self.last_delivery = time.monotonic()
        short = "short" in self.kinds and rng.random() < CHANCE["short"]
        seconds = SHORT_INVOCATION_SECONDS if short else 300.0
        delivery = queue.deliver(module.handler, messages, seconds)
        self.counts.add(delivery, short)
        if delivery.crashed:
            # The dead container's messages come back once their visibility timeout
            # passes; here, just after the lease it held.
            timer = threading.Timer(LEASE_SECONDS + 0.2, queue.expire, [messages])
            self.timers.append(timer)
            timer.start()
        self.last_delivery = time.monotonic()

    def dead_letters(self) -> None:
        """Hand what reached the dead-letter queue to the dead-letter function.

        A crash fails its whole batch, so a run's message can reach the DLQ by sharing
        batches with crashing runs, as in Lambda: its run is failed, with the reason.
        The dead-letter function has an engine of its own: the faults are the executor's.
        """
        queue = self.own.queue
        dead = queue.receive(queue.dlq_url, most=10)
        if not dead:
            return
        with self.counts.lock:
            self.dead_lettered.update(json.loads(m["Body"])["run_id"] for m in dead)
        delivery = queue.deliver(self.own.dead_letters.dead_letter_handler, dead,
                                 url=queue.dlq_url)
        assert not delivery.failed, f"the dead-letter function failed: {delivery}"
        self.last_delivery = time.monotonic()

    def run(self) -> float:
        """Plan and deliver everything; the seconds it took."""
        started = time.monotonic()
        plans, workflows = self.plan(), self.register()
        threads = [threading.Thread(target=self.container, args=(self.rng.random(),),
                                    name=f"soak-container-{n}") for n in range(CONTAINERS)]
        for thread in threads:
            thread.start()
        try:
            # Runs arrive while the containers work, from a few producers at once.
            with ThreadPoolExecutor(PRODUCERS) as producers:
                self.runs = list(producers.map(lambda plan: self.start(workflows, plan), plans))
            while not self.done() and time.monotonic() - self.last_delivery < IDLE_SECONDS:
                time.sleep(0.5)
        finally:
            self.stopping.set()
            for thread in threads:
                thread.join(timeout=60)
            for timer in self.timers:
                timer.cancel()
        return time.monotonic() - started

    def done(self) -> bool:
        """Whether every run has ended and no message is left (ended runs are not asked again)."""
        queue = self.own.queue
        if queue.depth() != 0 or queue.depth(queue.dlq_url) != 0:
            return False
        for run in self.runs:
            if run.run_id not in self.ended:
                if self.own.store.get_run(run.run_id)["status"] not in FINISHED:
                    return False
                self.ended.add(run.run_id)
        return True


def problem_kind(problem: str) -> str:
    """A problem's text without its particulars (ids, seqs, event lists), to count it."""
    return re.sub(r"\[.*|\d+|[0-9a-f-]{36}", "…", problem.split(":")[0])[:90]


def summary(soak: Soak, seconds: float, problems: list[tuple[SoakRun, str]],
            reports: list[Any], seed: int) -> str:
    runs = soak.runs
    statuses = Counter(report.record["status"] for report in reports)
    struck = Counter(f"{f.action}@{f.point}{'+' if f.after else ''}"
                     for run in runs for f in run.struck)
    planned = Counter(f.action for run in runs for f in run.faults)
    fired = Counter(f.action for run in runs for f in run.struck)
    keys = Counter(key for report in reports for key, n in report.requests.items() if n > 1)
    counts = soak.counts
    lines = [
        f"soak: {len(runs)} runs in {seconds:.1f} s, seed {seed} "
        f"(SOAK_SEED={seed} repeats it), faults {','.join(sorted(soak.kinds)) or 'none'}",
        f"  ended: {dict(sorted(statuses.items()))}; by workflow: "
        f"{dict(sorted(Counter(run.workflow for run in runs).items()))}",
        f"  faults injected: crash {fired['crash']}/{planned['crash']} planned, "
        f"throttle {fired['throttle']}/{planned['throttle']}, duplicate deliveries "
        f"{sum(run.duplicates for run in runs)}, slow steps {sum(run.slow for run in runs)}, "
        f"short invocations {counts.short_batches}",
        f"  where: {dict(sorted(struck.items()))}",
        f"  deliveries: {counts.deliveries} batches, {counts.records} records, "
        f"{counts.redeliveries} redeliveries, {counts.crashed_batches} crashed batches, "
        f"{counts.failed_records} failed records",
        f"  dead-lettered: {len(soak.dead_lettered)} runs (their batches crashed five times)",
        f"  resumed: {dict(Counter(r for report in reports for r in report.resumed))}",
        f"  re-executed steps: {sum(sum(report.reexecuted.values()) for report in reports)} "
        f"(in {sum(bool(report.reexecuted) for report in reports)} runs); "
        f"effects without a record: {sum(len(report.unrecorded) for report in reports)}",
        f"  duplicate keys seen: {len(keys)} Idempotency-Keys sent more than once, "
        f"retries included ({sum(keys.values())} requests)",
        f"  problems: {len(problems)} in {len({run.run_id for run, _ in problems})} runs"
        + "".join(f"\n    {n} × {kind}" for kind, n in Counter(
            problem_kind(problem) for _run, problem in problems).most_common()),
    ]
    return "\n".join(lines)


@pytest.mark.timeout(soak_timeout())
@pytest.mark.filterwarnings("always::tests.faults.test_soak.SoakReport")
def test_soak_every_run_ends_as_expected_through_random_faults(
    stack: LocalStack, world: MockHttpServer
) -> None:
    """Every run ends as its workflow says through random faults, none stuck or lost.

    Given SOAK_RUNS runs with random faults, each keeps the invariants of check_run.
    """
    runs, seed, kinds = soak_settings()
    soak = Soak(world, runs, seed, kinds)
    try:
        seconds = soak.run()
        checking = time.monotonic()
        problems, reports = [], []
        for run in soak.runs:
            dead = run.run_id in soak.dead_lettered
            report = run_problems(soak.own.store, run.run_id,
                                  status=None if dead else run.expected,
                                  servers=[world], reexecution=bool(run.struck))
            reports.append(report)
            problems += [(run, problem) for problem in report.problems]
            if dead and report.record["status"] not in (run.expected, "failed"):
                problems.append((run, f"dead-lettered, then {report.record['status']}"))
    finally:
        soak.own.close()
    checked = time.monotonic() - checking
    assert not soak.errors, f"a container failed: {soak.errors!r}"
    text = summary(soak, seconds, problems, reports, seed) + f"\n  checked in {checked:.1f} s"
    warnings.warn_explicit(SoakReport(text), SoakReport, __file__, 0)

    details = [f"{run.run_id} ({run.workflow}, faults "
               f"{[(f.action, f.point, f.after) for f in run.struck]}): {problem}"
               for run, problem in problems[:20]]
    assert not problems, text + "\n" + "\n".join(details)
