"""Real HTTP servers on 127.0.0.1 that stand in for the outside world in tests.

Each binds an ephemeral port, serves from a background thread, records every
request it receives, and is used as a context manager::

    with MockHttpServer() as mock:
        mock.route("GET", "/quote", json={"price": 30.4})
        ...  # point a step at mock.url("/quote")
        assert mock.requests[0].method == "GET"

``FakeMessagesApi`` answers ``POST /v1/messages`` the way Anthropic's Messages API
answers a non-streaming request, so the real anthropic SDK can talk to it through
``ANTHROPIC_BASE_URL``. Nothing here needs or touches the internet.
"""

from __future__ import annotations

import json
import socketserver
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

_UNSET: Any = object()


@dataclass(frozen=True)
class RecordedRequest:
    """One request as a server received it.

    Attributes:
        method: The HTTP method, upper case.
        path: The path without its query string, still percent-encoded.
        target: The request target exactly as sent (path and query string).
        query: The query string's parameters, each with all of its values.
        headers: The request headers, names lower-cased.
        body: The raw request body.
    """

    method: str
    path: str
    target: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """A response for a server to send.

    Attributes:
        status: The HTTP status code.
        body: The response body.
        headers: Extra response headers (``Content-Length`` is added unless streaming).
        delay: Seconds to wait before answering, to test clients' timeouts.
        chunks: When given, the body is sent piece by piece (no ``Content-Length``,
            the connection closes at the end), waiting ``chunk_delay`` between pieces.
        chunk_delay: Seconds between ``chunks``.
    """

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunks: tuple[bytes, ...] | None = None
    chunk_delay: float = 0.0


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    """A reply whose body is ``payload`` as JSON, with a JSON content type."""
    body = json.dumps(payload).encode()
    return Reply(status, body, {"Content-Type": "application/json", **(headers or {})})


Handler = Callable[[RecordedRequest], Reply]


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command,
            path=split.path,
            target=self.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        reply = self.server.owner.receive(request)
        if reply.delay:
            # Stopping the server cuts the wait short, so no handler outlives its test.
            self.server.owner.stopping.wait(reply.delay)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.chunks is not None:
            self._stream(reply)
            return
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _stream(self, reply: Reply) -> None:
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in reply.chunks or ():
            self.wfile.write(chunk)
            self.wfile.flush()
            if self.server.owner.stopping.wait(reply.chunk_delay):
                return
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean: the servers record requests instead of logging them."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: LocalServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", owner.port), _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer's own server_bind does a reverse DNS lookup of the host, which
        # can stall for seconds in a sandbox; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout tests) leaves a broken pipe behind: expected.
        if self.owner.stopping.is_set():
            return
        super().handle_error(request, client_address)


class LocalServer:
    """An HTTP server on 127.0.0.1 whose subclasses decide each request's reply."""

    def __init__(self, port: int = 0) -> None:
        """Prepare the server; ``start`` (or ``with``) binds ``port`` (0: a free one)."""
        self.port = port
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, path: str = "/") -> str:
        """The absolute URL of ``path`` on this server."""
        return self.base_url + (path if path.startswith("/") else f"/{path}")

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def start(self) -> Self:
        """Bind a free port and serve from a background thread."""
        self.stopping.clear()
        self._httpd = _Server(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-{self._httpd.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        """Start serving for the ``with`` block."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop serving when the ``with`` block ends."""
        self.stop()

    def receive(self, request: RecordedRequest) -> Reply:
        """Record ``request`` and choose its reply (called on the server's threads)."""
        with self._lock:
            self._requests.append(request)
        return self.answer(request)

    def answer(self, request: RecordedRequest) -> Reply:
        """The reply to ``request``; subclasses decide."""
        raise NotImplementedError


class MockHttpServer(LocalServer):
    """Answers routes configured by the test; anything else gets a JSON 404.

    Routes match on method and path; the query string is ignored for matching but
    recorded. A later ``route`` for the same method and path replaces the earlier one.
    """

    def __init__(self, port: int = 0) -> None:
        """Start with no routes; listen on ``port`` (0: a free one)."""
        super().__init__(port)
        self._routes: dict[tuple[str, str], Handler] = {}
        self._fallback: Handler | None = None

    def route(
        self,
        method: str,
        path: str,
        *,
        status: int = 200,
        json: Any = _UNSET,
        body: bytes | str = b"",
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer ``method path`` with a fixed response.

        Args:
            method: The HTTP method, any case.
            path: The path to match, without a query string.
            status: The status code to answer with.
            json: A value to send as a JSON body (sets the content type); wins over ``body``.
            body: The raw body, when ``json`` is not given.
            headers: Extra response headers.
            delay: Seconds to wait before answering.
        """
        if json is not _UNSET:
            reply = replace(json_reply(status, json, headers), delay=delay)
        else:
            raw = body.encode() if isinstance(body, str) else body
            reply = Reply(status, raw, dict(headers or {}), delay)
        self.respond_with(method, path, lambda _request: reply)

    def respond_with(self, method: str, path: str, handler: Handler) -> None:
        """Answer ``method path`` with whatever ``handler`` builds from each request."""
        with self._lock:
            self._routes[(method.upper(), path)] = handler

    def respond_to_the_rest(self, handler: Handler) -> None:
        """Answer every request no route matches with what ``handler`` builds."""
        with self._lock:
            self._fallback = handler

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The requests received for ``path``, oldest first."""
        return [request for request in self.requests if request.path == path]

    def answer(self, request: RecordedRequest) -> Reply:
        """The configured route's reply, or a JSON 404 naming what was asked for."""
        with self._lock:
            handler = self._routes.get((request.method, request.path)) or self._fallback
        if handler is None:
            return json_reply(404, {"error": f"no route for {request.method} {request.path}"})
        return handler(request)


def _api_error(status: int, error_type: str, message: str) -> Reply:
    request_id = f"req_{uuid.uuid4().hex[:24]}"
    payload = {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }
    return json_reply(status, payload, {"request-id": request_id})


def _prompt_text(messages: list[Any]) -> str:
    """The text of the user turns, whether each content is a string or text blocks."""
    parts: list[str] = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(block.get("text", "") for block in content if isinstance(block, dict))
    return "\n".join(parts)


def _presented_key(headers: dict[str, str]) -> str | None:
    # The API takes ``x-api-key``; the installed SDK sends the key as a bearer token.
    if "x-api-key" in headers:
        return headers["x-api-key"]
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


class FakeMessagesApi(LocalServer):
    """A local stand-in of Anthropic's Messages API (``POST /v1/messages``).

    With ``"stream": true`` it answers in the API's streaming protocol: SSE events
    ``message_start``, ``content_block_start``, ``ping``, one ``content_block_delta``
    (``text_delta``) per word of the reply, ``content_block_stop``, ``message_delta``
    and ``message_stop``, ``stream_delay`` seconds apart.

    It checks requests as the real API does: a missing key is a 401
    ``authentication_error``; a missing ``anthropic-version`` header, or a missing
    ``model``, ``max_tokens`` or ``messages``, is a 400 ``invalid_request_error``;
    errors use the API's ``{"type": "error", "error": {...}}`` envelope. The reply's
    text is the first rule whose substring occurs in the prompt (the user turns'
    text), else ``default_reply``. Token counts are word counts.

    Args:
        default_reply: The text to answer when no rule matches.
        api_key: When given, any other key is refused with a 401.
    """

    def __init__(
        self, default_reply: str = "OK", api_key: str | None = None, stream_delay: float = 0.0
    ) -> None:
        """Start with no rules: every prompt gets ``default_reply``."""
        super().__init__()
        self.stream_delay = stream_delay
        self.default_reply = default_reply
        self.api_key = api_key
        self.rules: list[tuple[str, str]] = []
        self._failures: list[Reply] = []

    def reply_when(self, substring: str, text: str) -> None:
        """Answer ``text`` to prompts containing ``substring`` (earlier rules win)."""
        self.rules.append((substring, text))

    def fail_next(self, status: int, error_type: str, message: str) -> None:
        """Answer the next valid request with this API error (e.g. 529 ``overloaded_error``)."""
        with self._lock:
            self._failures.append(_api_error(status, error_type, message))

    @property
    def prompts(self) -> list[str]:
        """The prompt text of every request received, oldest first."""
        bodies = (_json_object(request) or {} for request in self.requests)
        return [_prompt_text(body.get("messages") or []) for body in bodies]

    def answer(self, request: RecordedRequest) -> Reply:
        """A Message, or the API error the request deserves."""
        if (request.method, request.path) != ("POST", "/v1/messages"):
            return _api_error(404, "not_found_error", f"Not found: {request.method} {request.path}")
        refusal = self._check_auth(request.headers) or self._check_body(request)
        if refusal is not None:
            return refusal
        with self._lock:
            if self._failures:
                return self._failures.pop(0)
        body = request.json()
        if body.get("stream"):
            return self._streamed(self._message(body))
        return json_reply(200, self._message(body))

    def _streamed(self, message: dict[str, Any]) -> Reply:
        text = message["content"][0]["text"]
        words = [piece for piece in text.split(" ")]
        deltas = [word if n == len(words) - 1 else word + " " for n, word in enumerate(words)]
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {**message["usage"], "output_tokens": 1}}
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"}),
            *[("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": delta}})
              for delta in deltas if delta],
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta",
                               "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": message["usage"]["output_tokens"]}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        chunks = tuple(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                       for name, data in events)
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        return Reply(200, b"", headers, chunks=chunks, chunk_delay=self.stream_delay)

    def _check_auth(self, headers: dict[str, str]) -> Reply | None:
        key = _presented_key(headers)
        if key is None:
            return _api_error(401, "authentication_error", "x-api-key header is required")
        if self.api_key is not None and key != self.api_key:
            return _api_error(401, "authentication_error", "invalid x-api-key")
        if "anthropic-version" not in headers:
            return _api_error(400, "invalid_request_error", "anthropic-version: header is required")
        return None

    def _check_body(self, request: RecordedRequest) -> Reply | None:
        body = _json_object(request)
        if body is None:
            return _api_error(400, "invalid_request_error", "The request body is not a JSON object")
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                return _api_error(400, "invalid_request_error", f"{name}: Field required")
        max_tokens = body["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            message = "max_tokens: Input should be greater than or equal to 1"
            return _api_error(400, "invalid_request_error", message)
        if not isinstance(body["messages"], list) or not body["messages"]:
            message = "messages: at least one message is required"
            return _api_error(400, "invalid_request_error", message)
        return None

    def _message(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = _prompt_text(body["messages"])
        text = next((reply for part, reply in self.rules if part in prompt), self.default_reply)
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": max(1, len(prompt.split())),
                "output_tokens": max(1, len(text.split())),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "service_tier": "standard",
            },
        }


def _json_object(request: RecordedRequest) -> dict[str, Any] | None:
    try:
        body = request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
