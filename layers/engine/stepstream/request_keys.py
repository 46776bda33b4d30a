"""Idempotency keys: a request repeated with the same key starts no second run.

A client that sends ``Idempotency-Key`` with a request that starts a run gets, when it
sends the request again (a retry after a timeout, a webhook delivered twice), the run
the first one started, in its current state, instead of a new one. A key belongs to
one workflow and lasts ``RETENTION_SECONDS``; reused with a different input, or on
another route (a queued run's key sent to the sync route), it is refused
(``IdempotencyKeyReusedError``): the answer it would replay is not that route's.

Each key is one item in the runs table, beside the runs, under ``run_id = idem#<hash>``,
where the hash is SHA-256 of the workflow id and the key (``key_item_id``): the workflow
id comes from the URL and may be any length, and DynamoDB refuses a partition key over
2048 bytes, a refusal no retry can mend. The item holds:

- ``target_run_id``: the run the key stands for, chosen before the run is created;
- ``fingerprint``: SHA-256 of the canonical JSON of the route and the run's input;
- ``reserved_until``: until when the run may still be on its way (epoch seconds);
- ``expires_at``: the end of the key's life (epoch seconds; the table's TTL attribute).

It has no ``list_pk``, ``workflow_id`` or ``created_at``, so neither GSI holds it and
no listing of runs shows it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stepstream.errors import (
    ConflictError,
    IdempotencyKeyReusedError,
    NotFoundError,
    StepstreamError,
    StorageError,
)
from stepstream.store import Store, _n, _s

logger = logging.getLogger(__name__)

# How long a key stands for its run.
RETENTION_SECONDS = 24 * 60 * 60
# The longest key accepted, in characters of its UTF-8 text (see ``key_text``).
MAX_KEY_LENGTH = 255
# How long a reservation whose run does not exist yet still belongs to the request that
# made it. The API function's timeout (template.yaml, Globals): no request outlives it,
# so past this, a missing run will never come and the key may be taken over.
RESERVATION_SECONDS = 30
# How long a repeat waits for a run that a concurrent request is still creating, and
# the pause between looks; past the wait it is told to retry (ConflictError).
WAIT_SECONDS = 5.0
POLL_SECONDS = 0.05

# A function that creates (and queues or executes) a run with the id it is given.
Start = Callable[[str], dict[str, Any]]


def fingerprint(data: Any, route: str = "") -> str:
    """SHA-256 of the canonical JSON of a request: the route it came by and the run's
    input, whose key order and spacing do not count."""
    canonical = json.dumps([route, data], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def key_text(header: str) -> str:
    """The text a client sent as a header value, however the value was decoded.

    HTTP carries header values as bytes; a client sends text as UTF-8. API Gateway
    hands the Lambda function that text; an ASGI server (the local stack's front)
    decodes the bytes as latin-1, one character per byte, so ``é`` arrives as ``Ã©``.
    A value that is UTF-8 read as latin-1 is read again as UTF-8; any other value
    (a character past latin-1, bytes that are not UTF-8) is already the text.
    """
    try:
        return header.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return header


def check_key(key: str) -> None:
    """Refuse a key that is empty (or only spaces) or longer than ``MAX_KEY_LENGTH``.

    Characters are counted in the key's text (``key_text``), not in its bytes.
    """
    text = key_text(key)
    if not text.strip() or len(text) > MAX_KEY_LENGTH:
        raise StepstreamError(
            f"the Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} characters; "
            f"this one has {len(text)}"
        )


def key_item_id(workflow_id: str, key: str) -> str:
    """The ``run_id`` of the item that holds ``key`` for ``workflow_id``: 69 characters.

    The two are hashed as a JSON array, so no choice of separator inside either can
    make two pairs one (``a#b`` + ``c`` and ``a`` + ``b#c`` stay apart).
    """
    pair = json.dumps([workflow_id, key], ensure_ascii=True, separators=(",", ":"))
    return "idem#" + hashlib.sha256(pair.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class _Held:
    """A key's item as another request left it."""

    target_run_id: str
    fingerprint: str
    reserved_until: int

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> _Held:
        reserved = item.get("reserved_until", {"N": "0"})["N"]
        return cls(item["target_run_id"]["S"], item["fingerprint"]["S"], int(reserved))


def _unavailable(action: str, exc: ClientError | BotoCoreError) -> StorageError:
    code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
    return StorageError(f"DynamoDB refused {action}: {code or type(exc).__name__}")


def _refused_condition(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class RequestKey:
    """One request's idempotency key, scoped to a workflow.

    Args:
        store: The store whose runs table holds the key's item.
        workflow_id: The workflow the request runs (the key's scope).
        key: The ``Idempotency-Key`` the client sent.
        data: The run's input, which a repeat must match.
        route: The route the request came by, which a repeat must match too.
    """

    def __init__(self, store: Store, workflow_id: str, key: str, data: Any,
                 route: str = "") -> None:
        check_key(key)
        self.store = store
        self.workflow_id = workflow_id
        self.key = key_text(key)
        self.item_key = {"run_id": _s(key_item_id(workflow_id, self.key))}
        self.fingerprint = fingerprint(data, route)

    def start_once(self, start: Start) -> tuple[dict[str, Any], bool]:
        """The key's run: started now with ``start``, or the one an earlier request started.

        Returns:
            The run's record and whether it is an earlier request's (a replay).

        Raises:
            IdempotencyKeyReusedError: The key was used with a different input.
            ConflictError: The request that holds the key is still creating its run.
            StorageError: DynamoDB refused or could not be reached.
        """
        run_id = str(uuid.uuid4())
        deadline = time.monotonic() + WAIT_SECONDS
        while (held := self._reserve(run_id)) is not None:
            run = self._run(held.target_run_id)
            if run is not None:
                self._same_input(held)
                logger.info("run replayed for idempotency key",
                            extra={"workflow_id": self.workflow_id, "run_id": run["run_id"]})
                return run, True
            if held.reserved_until < time.time():
                if self._take_over(held, run_id):
                    break
                continue
            self._same_input(held)
            if time.monotonic() > deadline:
                raise ConflictError("a request with this Idempotency-Key is still starting "
                                    f"run {held.target_run_id}; retry in a moment")
            time.sleep(POLL_SECONDS)
        return self._create(start, run_id), False

    # The key's item over time, for requests with one key and one input:
    #
    #   A  reserve K -> R1 (put if absent) -- create R1 -- queue R1 -- 202
    #   B     reserve K refused, holds R1 -- no R1 yet, reserved: wait -- R1 exists: replay
    #
    #   A  reserve K -> R1 -- dies before creating R1
    #                    ...... reserved_until passes: no request lives that long
    #   C  reserve K refused, holds R1 -- no R1, not reserved -- SET target R2 IF target = R1
    #                                                            -- create R2 -- 202
    #   D  (racing C) ............................................ SET target R3 IF target = R1:
    #                                                            refused; waits for R2
    #
    # Every step that decides who holds the key is a conditional write: no read-then-write.

    def _reserve(self, run_id: str) -> _Held | None:
        """Make the key stand for ``run_id``; None if it did, else the holder's item."""
        now = int(time.time())
        item = {**self.item_key, **self._holding(run_id, now)}
        try:
            self.store.client.put_item(
                TableName=self.store.runs_table,
                Item=item,
                ConditionExpression="attribute_not_exists(run_id) OR expires_at < :now",
                ExpressionAttributeValues={":now": _n(now)},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _refused_condition(exc) and "Item" in exc.response:
                return _Held.from_item(exc.response["Item"])
            raise _unavailable("the idempotency key's reservation", exc) from exc
        except BotoCoreError as exc:
            raise _unavailable("the idempotency key's reservation", exc) from exc
        return None

    def _take_over(self, held: _Held, run_id: str) -> bool:
        """Point the key at ``run_id`` if it still points at the missing ``held`` run."""
        now = int(time.time())
        holding = self._holding(run_id, now)
        try:
            self.store.client.update_item(
                TableName=self.store.runs_table,
                Key=self.item_key,
                UpdateExpression="SET " + ", ".join(f"{name} = :{name}" for name in holding),
                ConditionExpression="target_run_id = :stale",
                ExpressionAttributeValues={
                    ":stale": _s(held.target_run_id),
                    **{f":{name}": value for name, value in holding.items()},
                },
            )
        except ClientError as exc:
            if _refused_condition(exc):
                return False
            raise _unavailable("the idempotency key's take-over", exc) from exc
        except BotoCoreError as exc:
            raise _unavailable("the idempotency key's take-over", exc) from exc
        logger.warning("idempotency key taken over from a run never created",
                       extra={"workflow_id": self.workflow_id, "stale_run_id": held.target_run_id,
                              "run_id": run_id})
        return True

    def _holding(self, run_id: str, now: int) -> dict[str, dict[str, str]]:
        return {
            "target_run_id": _s(run_id),
            "fingerprint": _s(self.fingerprint),
            "reserved_until": _n(now + RESERVATION_SECONDS),
            "expires_at": _n(now + RETENTION_SECONDS),
        }

    def _create(self, start: Start, run_id: str) -> dict[str, Any]:
        """Start the run the key now stands for; if that fails before a run exists, free the key.

        A request refused before its run was stored (an unknown workflow, an input too
        large) leaves nothing for a repeat to return, so the key is freed for the
        corrected request rather than held, with a different input, until it expires.
        """
        try:
            return start(run_id)
        except Exception:
            self._release_unused(run_id)
            raise

    def _release_unused(self, run_id: str) -> None:
        """Delete the key's item if it still stands for ``run_id`` and no such run exists.

        Best effort: a reservation left behind lapses after ``RESERVATION_SECONDS``.
        """
        try:
            if self._run(run_id) is not None:
                return
            self.store.client.delete_item(
                TableName=self.store.runs_table,
                Key=self.item_key,
                ConditionExpression="target_run_id = :mine",
                ExpressionAttributeValues={":mine": _s(run_id)},
            )
        except ClientError as exc:
            if not _refused_condition(exc):  # refused: another request holds the key now
                logger.warning("idempotency key not freed", exc_info=True,
                               extra={"workflow_id": self.workflow_id, "run_id": run_id})
        except (StorageError, BotoCoreError):
            logger.warning("idempotency key not freed", exc_info=True,
                           extra={"workflow_id": self.workflow_id, "run_id": run_id})

    def _run(self, run_id: str) -> dict[str, Any] | None:
        try:
            return self.store.get_run(run_id)
        except NotFoundError:
            return None
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(f"the read of run {run_id}", exc) from exc

    def _same_input(self, held: _Held) -> None:
        if held.fingerprint != self.fingerprint:
            raise IdempotencyKeyReusedError(self.workflow_id, self.key)


def start_once(
    store: Store, workflow_id: str, key: str, data: Any, start: Start, route: str = ""
) -> tuple[dict[str, Any], bool]:
    """Start a run of ``workflow_id`` once per ``key``: see ``RequestKey.start_once``.

    Args:
        store: The store whose runs table holds the key.
        workflow_id: The workflow the run is of; keys are scoped to it.
        key: The client's ``Idempotency-Key``.
        data: The run's input; a repeat with another input is refused.
        start: Creates the run with the id it is given and returns its record.
        route: The route the request came by; a repeat by another is refused.

    Returns:
        The run's record and whether an earlier request started it.
    """
    return RequestKey(store, workflow_id, key, data, route).start_once(start)
