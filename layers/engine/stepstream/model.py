"""The workflow format as one pydantic model, discriminated by each step's ``type``.

This model is the single description of what a workflow file may contain: the
validator checks files against it, the JSON Schema shipped for editors is generated
from it, and unknown keys are errors, so a typo never silently does nothing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_MODEL = "claude-sonnet-4-6"
DEFAULT_MAX_ITERATIONS = 10
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
STEP_ID = r"^[A-Za-z_][A-Za-z0-9_-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _StepBase(_Strict):
    id: str = Field(pattern=STEP_ID, description="Unique step id; templates read `{id.field}`.")
    description: str | None = Field(None, description="Free text for readers.")
    max_iterations: int | None = Field(
        None, ge=1, le=1000,
        description="How many times this step may run in one run (loops); "
        "defaults to the workflow's `max_iterations`.",
    )


class TriggerStep(_StepBase):
    """The entry step: its output is the run's input (`body`, `headers`)."""

    type: Literal["trigger"]
    path: str | None = Field(None, description="Accepted for the original format; unused.")


class HttpStep(_StepBase):
    """Call a URL; the output is `status_code`, `body` (JSON or text) and `headers`."""

    type: Literal["http"]
    url: str
    method: str = "GET"
    headers: dict[str, str | int | float | bool] | None = None
    body: Any = None
    timeout: float = Field(30, gt=0, le=900, description="Seconds for the whole request.")

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value.upper() not in HTTP_METHODS:
            known = ", ".join(sorted(HTTP_METHODS))
            raise ValueError(f"unknown HTTP method {value!r} (known: {known})")
        return value


class LlmStep(_StepBase):
    """Ask Claude (Messages API); the output is `content`, `parsed`, `model`, `usage`."""

    type: Literal["llm"]
    prompt: str
    model: str = DEFAULT_MODEL
    max_tokens: int = Field(1024, ge=1, le=200_000)
    system: str | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    stream: bool = Field(
        False, description="Send the model's text to watchers as it is written "
        "(`step_progress` events, coalesced); `step_completed` still has it all.",
    )
    output_key: str | None = Field(
        None, description="Accepted for the original format; it has no effect."
    )


class ConditionStep(_StepBase):
    """Evaluate `condition` and jump to `on_true` or `on_false`."""

    type: Literal["condition"]
    condition: str | bool
    on_true: str | None = None
    on_false: str | None = None


class NotifyStep(_StepBase):
    """Send a message: `webhook` POSTs it; `log` logs it; `email`/`slack` only log for now."""

    type: Literal["notify"]
    channel: Literal["log", "email", "slack", "webhook"] = "log"
    message: str = ""
    recipient: str = ""
    subject: str | None = None
    url: str | None = Field(None, description="Where a `webhook` notification is POSTed.")
    timeout: float = Field(30, gt=0, le=900)


StepModel = Annotated[
    TriggerStep | HttpStep | LlmStep | ConditionStep | NotifyStep,
    Field(discriminator="type"),
]
NODE_TYPES = ("trigger", "http", "llm", "condition", "notify")


class TriggerModel(_Strict):
    """How runs start besides the API: a webhook path."""

    type: Literal["webhook", "manual"] = "webhook"
    path: str | None = Field(
        None, pattern=r"^/?triggers/[A-Za-z0-9._~-]{1,128}$",
        description="Webhook path, `/triggers/<one segment>`; `/triggers/<name>` by default. "
        "POST /api/v1/runs/trigger/<segment> starts a run.",
    )


class WorkflowModel(_Strict):
    """A Stepstream workflow file."""

    model_config = ConfigDict(
        extra="forbid", strict=True, title="Stepstream workflow",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    description: str = Field("", max_length=4096)
    trigger: TriggerModel = Field(default_factory=TriggerModel)
    max_iterations: int = Field(
        DEFAULT_MAX_ITERATIONS, ge=1, le=1000,
        description="How many times any one step may run in one run; loops past it fail.",
    )
    steps: list[StepModel] = Field(min_length=1)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the workflow format (for yaml-language-server and editors)."""
    return WorkflowModel.model_json_schema()
