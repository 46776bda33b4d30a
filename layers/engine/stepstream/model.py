"""The workflow format as one pydantic model, discriminated by each step's ``type``.

This model is the single description of what a workflow file may contain: the
validator checks files against it, the JSON Schema shipped for editors is generated
from it, and unknown keys are errors, so a typo never silently does nothing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stepstream.policy import ERROR_KINDS, STATUS_CLASS

DEFAULT_MODEL = "claude-sonnet-4-6"
DEFAULT_MAX_ITERATIONS = 10
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
STEP_ID = r"^[A-Za-z_][A-Za-z0-9_-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _entry_problems(values: list[Any], what: str, kinds: bool = False) -> list[str]:
    """What is wrong with each entry of a list of HTTP statuses, classes like '5xx' and,
    with ``kinds``, error kinds: every entry's problem, so one round of fixes finds all."""
    problems = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | str):
            also = ", an error kind" if kinds else ""
            problems.append(f"{what}: {value!r} is not an HTTP status{also} or a class "
                            "like '5xx'")
        elif isinstance(value, int):
            if not 100 <= value <= 599:
                problems.append(f"{what}: {value} is not an HTTP status (100-599)")
        elif STATUS_CLASS.fullmatch(value) or (kinds and value in ERROR_KINDS):
            continue
        elif value[:1].isdigit() and kinds:
            problems.append(f"{value!r} is neither an HTTP status (write numbers unquoted: "
                            "503) nor a class of them ('1xx' to '5xx')")
        elif kinds:
            known = ", ".join(sorted(ERROR_KINDS))
            problems.append(f"unknown error kind {value!r} (known: {known}; or an HTTP "
                            "status, or a class like '5xx')")
        else:
            problems.append(f"{what}: {value!r} is neither a status nor a class like '5xx'")
    return problems


def _refuse(problems: list[str]) -> None:
    """One error naming every problem of a list."""
    if problems:
        raise ValueError("; ".join(problems))


class Backoff(_Strict):
    """How long to wait before each retry: ``initial * multiplier ** (retry - 1)``, capped."""

    initial: float = Field(1.0, ge=0, le=3600, description="Seconds before the first retry.")
    multiplier: float = Field(2.0, ge=1, le=10, description="Growth of the wait per retry.")
    max: float = Field(300.0, ge=0, le=86_400, description="The longest wait, in seconds.")


class RetryPolicy(_Strict):
    """When and how often a failed step is tried again."""

    attempts: int = Field(3, ge=1, le=100, description="Tries in all, the first included.")
    backoff: Backoff = Field(default_factory=Backoff)
    jitter: bool = Field(
        True, description="Wait a random time between half the backoff and all of it, "
        "so that many runs failing together do not retry together.",
    )
    on: list[str | int] = Field(
        default_factory=lambda: ["network", "timeout", 408, 429, "5xx"],
        description="Failures worth retrying: error kinds "
        f"({', '.join(sorted(ERROR_KINDS))}), HTTP statuses, or classes like '5xx'.",
    )

    @field_validator("on", mode="before")
    @classmethod
    def _known(cls, values: Any) -> Any:
        # Before pydantic's own check, which would name one entry of a wrong type, twice
        # (once per form of ``str | int``), and none of the others.
        if isinstance(values, list):
            _refuse(_entry_problems(values, "on", kinds=True))
        return values


class OnErrorGoto(_Strict):
    """Go to a named step when this one fails; it reads ``{failed_step.error...}``."""

    goto: str = Field(pattern=STEP_ID)


class _StepBase(_Strict):
    id: str = Field(pattern=STEP_ID, description="Unique step id; templates read `{id.field}`.")
    description: str | None = Field(None, description="Free text for readers.")
    max_iterations: int | None = Field(
        None, ge=1, le=1000,
        description="How many times this step may run in one run (loops); "
        "defaults to the workflow's `max_iterations`.",
    )
    retry: RetryPolicy | None = Field(None, description="Try the step again when it fails.")
    on_error: Literal["fail", "continue"] | OnErrorGoto = Field(
        "fail", description="When the step fails (after its retries): `fail` the run, "
        "`continue` with the next step, or `{goto: step_id}`. The failure is readable as "
        "`{step_id.error.message}`, `.kind` and `.status_code`.",
    )
    timeout: float | None = Field(
        None, gt=0, le=86_400,
        description="Seconds the step may take in all, retries and waits included; "
        "without it, an attempt of an http or notify step may take 30 s, of an llm "
        "step 600 s.",
    )

    @field_validator("on_error", mode="before")
    @classmethod
    def _on_error_shape(cls, value: Any) -> Any:
        # One message for a value of neither form, rather than one per form of the union.
        if isinstance(value, dict) or value in ("fail", "continue"):
            return value
        raise ValueError(f"must be 'fail', 'continue' or {{goto: step_id}}, not {value!r}")


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
    timeout: float | None = Field(
        None, gt=0, le=86_400,
        description="Seconds the step may take in all, retries and waits included; "
        "without it, each attempt may take 30 s.",
    )
    accept_status: list[int | str] | Literal["any"] | None = Field(
        None, min_length=1,
        description="Statuses that complete the step (numbers or classes like '4xx'); "
        "`any` accepts every response. By default 1xx-3xx complete it and 4xx/5xx fail it.",
    )

    @field_validator("accept_status", mode="before")
    @classmethod
    def _statuses(cls, value: Any) -> Any:
        if isinstance(value, list):
            _refuse(_entry_problems(value, "accept_status"))
        if value is None or isinstance(value, list) or value == "any":
            return value
        raise ValueError(f"must be a list of statuses (200, '4xx') or 'any', not {value!r}")

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
    timeout: float | None = Field(
        None, gt=0, le=86_400,
        description="Seconds the step may take in all, retries and waits included; "
        "without it, each attempt may take 30 s.",
    )


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
    timeout: float | None = Field(
        None, gt=0, le=30 * 86_400,
        description="Seconds the whole run may take from its start; past it, the run fails.",
    )
    steps: list[StepModel] = Field(min_length=1)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the workflow format (for yaml-language-server and editors)."""
    return WorkflowModel.model_json_schema()
