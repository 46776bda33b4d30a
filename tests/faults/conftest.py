"""Fixtures of the fault suite: the stack's store and executor, workflows, a recording server."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from textwrap import dedent, indent
from types import ModuleType

import pytest

from stepstream import Engine, Settings
from stepstream.store import Store
from stepstream_local.stack import LocalStack
from tests.support.faults import OwnExecutor, executor_for
from tests.support.servers import MockHttpServer, json_reply

Register = Callable[[str], str]


def workflow_yaml(steps: str) -> str:
    """A workflow with a unique name (so a unique trigger path) and these steps."""
    return (f"name: faults_{uuid.uuid4().hex[:12]}\nsteps:\n"
            + indent(dedent(steps).strip() + "\n", "  "))


@pytest.fixture(scope="module")
def stack_engine(stack: LocalStack) -> Engine:
    """An engine with the stack's settings: its lease length, its run queue."""
    return Engine(Settings.from_env())


@pytest.fixture(scope="module")
def store(stack_engine: Engine) -> Store:
    """The stack's tables."""
    return stack_engine.store


@pytest.fixture(scope="module")
def stack_executor(stack_engine: Engine) -> ModuleType:
    """Another container of the stack's executor: its code and settings, its own module.

    Not the stack's loaded function: its poller calls that one from several threads,
    and a direct call beside them shares its batch processor (see
    ``test_concurrent_invocations_of_the_stacks_executor_report_their_own_failures``).
    """
    return executor_for(stack_engine)


@pytest.fixture(scope="module")
def register(stack_engine: Engine) -> Register:
    """Registers a workflow from its steps' YAML; returns its id."""

    def register(steps: str) -> str:
        return str(stack_engine.register_workflow(workflow_yaml(steps))["workflow_id"])

    return register


@pytest.fixture
def effects() -> Iterator[MockHttpServer]:
    """The outside world of the runs, recording every request and its Idempotency-Key.

    ``POST /effect`` answers 200 at once; tests add routes of their own.
    """
    with MockHttpServer() as server:
        server.respond_with("POST", "/effect", lambda request: json_reply(200, {"done": True}))
        yield server


@pytest.fixture
def own(stack: LocalStack) -> Iterator[OwnExecutor]:
    """An executor of the test's own with a 1 s lease and a private queue."""
    executor = OwnExecutor.create(f"faults-{uuid.uuid4().hex[:6]}")
    yield executor
    executor.close()
