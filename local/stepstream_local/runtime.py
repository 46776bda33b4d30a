"""Loading a function's handler as Lambda would, and the context object it receives."""

from __future__ import annotations

import importlib
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stepstream_local.cfn import Template

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LocalContext:
    """The attributes of Lambda's context object that handlers and powertools read."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = ""
    function_version: str = "$LATEST"
    deadline: float = 0.0

    @property
    def invoked_function_arn(self) -> str:
        """The function's ARN, as Lambda would pass it."""
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        """The function's log group."""
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        """A log stream name."""
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout."""
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@dataclass
class LocalFunction:
    """One of the template's functions, loaded in this process."""

    logical_id: str
    handler: Handler
    memory: int
    timeout: int

    def invoke(self, event: dict[str, Any]) -> Any:
        """Call the handler with ``event`` and a fresh context, as one invocation."""
        context = LocalContext(
            function_name=self.logical_id,
            memory_limit_in_mb=self.memory,
            timeout_seconds=self.timeout,
            aws_request_id=str(uuid.uuid4()),
            deadline=time.monotonic() + self.timeout,
        )
        return self.handler(event, context)


def import_code(template: Template, logical_id: str) -> str:
    """Put the function's ``CodeUri`` on ``sys.path``; return its ``Handler`` setting."""
    code = template.root / template.function_setting(logical_id, "CodeUri")
    if str(code) not in sys.path:
        sys.path.insert(0, str(code))
    return str(template.function_setting(logical_id, "Handler"))


def load_function(template: Template, logical_id: str) -> LocalFunction:
    """Import the handler the template names for ``logical_id``."""
    module_name, _, attribute = import_code(template, logical_id).rpartition(".")
    handler = getattr(importlib.import_module(module_name), attribute)
    return LocalFunction(
        logical_id,
        handler,
        int(template.function_setting(logical_id, "MemorySize", 128)),
        int(template.function_setting(logical_id, "Timeout", 3)),
    )
