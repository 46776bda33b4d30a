"""The engine's errors: one base class, subclasses that carry the ids they concern.

The API function maps these to HTTP statuses in one place; the executor reads
``retryable`` to decide between failing a run for good and letting SQS redeliver.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class StepstreamError(Exception):
    """Base of every error the engine raises on purpose."""

    retryable = False


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow file, located as precisely as we can.

    Attributes:
        message: What is wrong, in one sentence.
        line: 1-based line in the YAML text, when known.
        column: 1-based column in the YAML text, when known.
        step_id: The step the problem is in, when it is in one.
        field: The key the problem is in, when it is in one.
    """

    message: str
    line: int | None = None
    column: int | None = None
    step_id: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = f"{self.line}:{self.column}: " if self.line else ""
        step = f"step '{self.step_id}': " if self.step_id else ""
        key = f"{self.field}: " if self.field else ""
        return f"{where}{step}{key}{self.message}"

    def as_dict(self) -> dict[str, object]:
        """The problem as a JSON-ready mapping for API responses."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class WorkflowInvalidError(StepstreamError):
    """A workflow's YAML text or structure is not acceptable.

    Attributes:
        problems: Every problem found, not just the first.
    """

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "; ".join(str(p) for p in self.problems)


class NotFoundError(StepstreamError):
    """A workflow, run or trigger path that does not exist was asked for."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} not found: {key}")
        self.kind = kind
        self.key = key


class ConflictError(StepstreamError):
    """A write would break a uniqueness rule (e.g. a trigger path already taken)."""


class InputTooLargeError(StepstreamError):
    """A run's input is larger than a run may carry."""


class StepError(StepstreamError):
    """A step could not do its work; the run records it as the step's error.

    ``kind`` says what sort of failure it was, for ``retry.on`` and for templates
    that read ``{step_id.error.kind}``:

    - ``network``: no response (refused, reset, unknown host);
    - ``timeout``: the step's deadline (or the run's) passed;
    - ``http_status``: a response whose status the step does not accept;
    - ``api``: the Messages API answered with an error;
    - ``template``, ``expression``: the step's data could not be built;
    - ``config``: the step's settings cannot work (e.g. a webhook without a URL);
    - ``crash``: a bug in a node.

    Attributes:
        step_id: The failing step.
        field: The step's key that the failure concerns, if one does.
        kind: The sort of failure (above).
        status_code: The HTTP status that made it fail, if one did.
        output: What the step got before failing (an http response), for templates.
    """

    def __init__(
        self,
        message: str,
        *,
        step_id: str = "",
        field: str | None = None,
        kind: str = "config",
        status_code: int | None = None,
        output: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.step_id = step_id
        self.field = field
        self.kind = kind
        self.status_code = status_code
        self.output = output or {}


class TemplateError(StepError):
    """A ``{step_id.field}`` reference could not be resolved."""

    def __init__(self, message: str, *, reference: str, field: str | None = None) -> None:
        super().__init__(message, field=field, kind="template")
        self.reference = reference


class ExpressionError(StepError):
    """A condition expression could not be evaluated."""

    def __init__(self, message: str, *, step_id: str = "", field: str | None = None) -> None:
        super().__init__(message, step_id=step_id, field=field, kind="expression")


class StorageError(StepstreamError):
    """DynamoDB, SQS or Redis refused or failed a request.

    Attributes:
        retryable: Whether the same request may succeed later (throttling, a service
            error); False when it never will (an item over DynamoDB's size limit).
        too_large: The write would have made an item larger than DynamoDB allows.
    """

    def __init__(self, message: str, *, retryable: bool = True, too_large: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.too_large = too_large


class LeaseLostError(StepstreamError):
    """Another executor took over a run this one was executing (its lease expired)."""

    retryable = True


class RunStateError(ConflictError):
    """A run is not in a state that allows what was asked (cancel a finished run)."""


class IdempotencyKeyReusedError(StepstreamError):
    """An ``Idempotency-Key`` came back with another input than the run it started.

    Attributes:
        workflow_id: The workflow the key is scoped to.
        key: The key.
    """

    def __init__(self, workflow_id: str, key: str) -> None:
        super().__init__(
            "this Idempotency-Key was already used with a different request to workflow "
            f"{workflow_id}; send a new key for a new request"
        )
        self.workflow_id = workflow_id
        self.key = key
