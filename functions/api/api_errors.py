"""The one place where engine errors become HTTP responses."""

from __future__ import annotations

import logging

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from stepstream import (
    ConflictError,
    IdempotencyKeyReusedError,
    InputTooLargeError,
    NotFoundError,
    StepstreamError,
    StorageError,
    WorkflowInvalidError,
)

logger = logging.getLogger(__name__)


def _json(status: int, body: dict[str, object]) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def install(app: APIGatewayHttpResolver) -> None:
    """Map the engine's errors to statuses on ``app``; anything else is a logged 500."""
    _install_body_errors(app)
    _install_engine_errors(app)


def _install_body_errors(app: APIGatewayHttpResolver) -> None:
    """Request bodies that cannot be read or are too large: 400 and 413."""

    @app.exception_handler(RequestValidationError)
    def invalid_request(exc: RequestValidationError) -> Response:
        # Powertools' own answer gives only `loc` and `type`; `msg` says what would do
        # ("Input should be 'queued', 'running', ..."). Pydantic's messages name no code.
        errors = [{"loc": list(error["loc"]), "type": error["type"], "msg": error.get("msg", "")}
                  for error in exc.errors()]
        return _json(422, {"statusCode": 422, "detail": errors})

    @app.exception_handler(UnicodeDecodeError)
    def not_text(exc: UnicodeDecodeError) -> Response:
        logger.info("request body is not UTF-8")
        return _json(400, {"detail": "the request body is not UTF-8 text"})

    @app.exception_handler(InputTooLargeError)
    def too_large(exc: InputTooLargeError) -> Response:
        return _json(413, {"detail": str(exc)})

    @app.exception_handler(RecursionError)
    def too_deep(exc: RecursionError) -> Response:
        logger.info("request body nests too deeply")
        return _json(400, {"detail": "the request body nests too deeply"})

    @app.exception_handler(ValueError)
    def bad_value(exc: ValueError) -> Response:
        # json.loads' refusals (e.g. an integer of more than 4300 digits) end up here.
        logger.info("request body refused", extra={"error": str(exc)})
        return _json(400, {"detail": f"the request body cannot be read: {exc}"})


def _install_engine_errors(app: APIGatewayHttpResolver) -> None:
    """The engine's refusals (4xx) and storage failures (503)."""

    @app.exception_handler(WorkflowInvalidError)
    def invalid_workflow(exc: WorkflowInvalidError) -> Response:
        logger.info("workflow rejected", extra={"problems": str(exc)})
        errors = [problem.as_dict() for problem in exc.problems]
        return _json(422, {"detail": f"invalid workflow: {exc}", "errors": errors})

    @app.exception_handler(NotFoundError)
    def not_found(exc: NotFoundError) -> Response:
        logger.info("not found", extra={"kind": exc.kind, "key": exc.key})
        return _json(404, {"detail": str(exc)})

    @app.exception_handler(IdempotencyKeyReusedError)
    def key_reused(exc: IdempotencyKeyReusedError) -> Response:
        logger.info("idempotency key reused", extra={"workflow_id": exc.workflow_id})
        return _json(422, {"detail": str(exc)})

    @app.exception_handler(ConflictError)
    def conflict(exc: ConflictError) -> Response:
        return _json(409, {"detail": str(exc)})

    @app.exception_handler(StorageError)
    def storage(exc: StorageError) -> Response:
        if exc.too_large:
            # No retry mends it: the request (its input, with the workflow) is too big.
            logger.info("request too large to store", extra={"error": str(exc)})
            return _json(413, {"detail": "the run is too large to store: DynamoDB holds "
                                         "400 KB for a run's input, workflow and results"})
        logger.warning("storage unavailable", extra={"error": str(exc)})
        return _json(503, {"detail": "storage is unavailable; try again"})

    @app.exception_handler(StepstreamError)
    def other(exc: StepstreamError) -> Response:
        logger.warning("request refused", extra={"error": str(exc)})
        return _json(400, {"detail": str(exc)})
