"""The engine package imports its modules on first use, so the stream function stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import stepstream

# What the stream function reads events with, and what it must not pay for.
STREAM_NEEDS = "stepstream, stepstream.store, stepstream.events, stepstream.tokens"
HEAVY = ("stepstream.definition", "stepstream.runner", "stepstream.service", "pydantic", "httpx",
         "yaml", "simpleeval")


def test_reading_events_imports_no_model_runner_or_nodes() -> None:
    """A fresh interpreter importing what the stream uses loads none of the heavy modules."""
    code = (f"import sys, {STREAM_NEEDS}; from stepstream import NotFoundError, Settings\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)

    assert result.stdout.strip() == ""


@pytest.mark.parametrize("name", stepstream.__all__)
def test_every_public_name_resolves(name: str) -> None:
    """Each name in __all__ is there when asked for, from the module that defines it."""
    value = getattr(stepstream, name)

    assert value.__module__.startswith("stepstream.")
    assert name in dir(stepstream)


def test_unknown_name_is_an_attribute_error() -> None:
    """Asking for a name the package does not have fails as for any module."""
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        stepstream.Nothing  # noqa: B018 - the access is the test
