"""The local stack: moto server, the API front, the stream app and the SQS event source.

Which function plays which part is read from the template: the one with ``HttpApi``
events is the API, the one with an ``SQS`` event is fed by the queue poller, and the
one with a ``FunctionUrlConfig`` is the stream, whose ASGI app the template names
in ``STREAM_ASGI_APP`` (the Web Adapter's ``run.sh`` starts the same app).

Locally the stream app shares the API's port: requests for ``/api/v1/runs/*/stream``
(and the run page, ``/view``) go to it, as the original service served the stream, and
everything else goes through the
API Gateway front. On AWS the stream has its own function URL.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import secrets
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from moto.server import ThreadedMotoServer
from starlette.requests import Request

from stepstream_local.apigw import HttpApiFront, http_api_routes
from stepstream_local.cfn import Template
from stepstream_local.poller import SqsPoller
from stepstream_local.provision import provision
from stepstream_local.runtime import LocalFunction, import_code, load_function

STREAM_PATH = re.compile(r"^/api/v1/runs/[^/]+/(?:stream|view)$")
DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def _functions_with(template: Template, predicate: Any) -> list[str]:
    functions = template.resources("AWS::Serverless::Function")
    return [name for name, spec in functions.items() if predicate(spec["Properties"])]


def _has_event(kind: str) -> Any:
    return lambda props: any(e["Type"] == kind for e in props.get("Events", {}).values())


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be listened on."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class StackUrls:
    """Where the running stack answers."""

    api: str
    stream: str
    aws: str


class LocalStack:
    """Stepstream running whole in this process.

    Args:
        template_path: The SAM template to build the stack from.
        host: Interface to listen on.
        port: The API's port (0 picks a free one).
        redis_url: Redis for the live event path; None reads ``REDIS_URL``, "" disables.
        log_level: The template's ``LogLevel`` parameter for the functions' loggers.
        stream_mode: The template's ``StreamInvokeMode``: ``RESPONSE_STREAM`` or ``BUFFERED``.
        stream_secret: Key for stream tokens; None makes a random one, "" leaves streams open.
    """

    def __init__(
        self,
        template_path: Path = DEFAULT_TEMPLATE,
        host: str = "127.0.0.1",
        port: int = 0,
        redis_url: str | None = None,
        log_level: str = "INFO",
        stream_mode: str = "RESPONSE_STREAM",
        stream_secret: str | None = None,
    ) -> None:
        self.template_path = template_path
        self.host = host
        self.port = port
        self.redis_url = os.environ.get("REDIS_URL", "") if redis_url is None else redis_url
        self.log_level = log_level
        self.stream_mode = stream_mode
        self.stream_secret = secrets.token_hex(32) if stream_secret is None else stream_secret
        self.moto = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
        self.pollers: list[SqsPoller] = []
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.urls: StackUrls | None = None

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> StackUrls:
        """Start everything; returns the URLs it answers on."""
        # moto's server logs every AWS request through werkzeug; that is noise here.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.moto.start()
        aws = "http://{}:{}".format(*self.moto.get_host_and_port())
        os.environ.update(
            AWS_ENDPOINT_URL=aws,
            AWS_ACCESS_KEY_ID="local",
            AWS_SECRET_ACCESS_KEY="local",  # noqa: S105 - moto accepts any credentials
            AWS_DEFAULT_REGION="us-east-1",
            AWS_REGION="us-east-1",
        )
        overrides = {
            "RedisUrl": self.redis_url,
            "AnthropicApiKey": os.environ.get("ANTHROPIC_API_KEY", ""),
            "LogLevel": self.log_level,
            "StreamInvokeMode": self.stream_mode,
            "StreamTokenSecret": self.stream_secret,
        }
        template = Template.load(self.template_path, overrides)
        provision(template)
        listener = self._listen()
        api = "http://{}:{}".format(*listener.getsockname()[:2])
        # The stream shares the API's listener here; on AWS it has its own function URL.
        template.attributes[("StreamFunctionUrl", "FunctionUrl")] = f"{api}/"
        self._serve(self._wire(template), listener)
        self.urls = StackUrls(api=api, stream=api, aws=aws)
        for poller in self.pollers:
            poller.start()
        return self.urls

    def _wire(self, template: Template) -> Any:
        # One process holds all three functions, so their environments merge; they
        # differ only in the Web Adapter's settings, which nothing here reads.
        functions = template.resources("AWS::Serverless::Function")
        for logical_id in functions:
            os.environ.update(template.function_environment(logical_id))
        (api_id,) = _functions_with(template, _has_event("HttpApi"))
        api = HttpApiFront(load_function(template, api_id), http_api_routes(template, api_id))
        for executor_id in _functions_with(template, _has_event("SQS")):
            self._add_poller(template, executor_id)
        (stream_id,) = _functions_with(template, lambda p: "FunctionUrlConfig" in p)
        import_code(template, stream_id)
        module, _, attribute = os.environ["STREAM_ASGI_APP"].partition(":")
        stream_app = getattr(importlib.import_module(module), attribute)

        async def front(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan" or STREAM_PATH.match(scope.get("path", "")):
                await stream_app(scope, receive, send)
                return
            response = await api(Request(scope, receive))
            await response(scope, receive, send)

        return front

    def queue_function(self, logical_id: str) -> LocalFunction:
        """The function the template's ``logical_id`` names, among those fed by queues."""
        for poller in self.pollers:
            if poller.function.logical_id == logical_id:
                return poller.function
        raise KeyError(f"no queue feeds a function {logical_id!r}")

    def _add_poller(self, template: Template, logical_id: str) -> None:
        function = load_function(template, logical_id)
        events = template.resources("AWS::Serverless::Function")[logical_id]["Properties"]
        for event in events["Events"].values():
            if event["Type"] != "SQS":
                continue
            props = event["Properties"]
            queue_arn = template.resolve(props["Queue"])
            (logical_queue,) = [
                name for (name, attr), value in template.attributes.items()
                if attr == "Arn" and value == queue_arn
            ]
            report = "ReportBatchItemFailures" in props.get("FunctionResponseTypes", [])
            self.pollers.append(
                SqsPoller(function, template.physical[logical_queue], queue_arn,
                          int(props.get("BatchSize", 10)), report)
            )

    def _listen(self) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
        except OSError as exc:
            listener.close()
            raise RuntimeError(f"the local stack cannot listen on {self.host}:{self.port}: "
                               f"{exc.strerror}") from exc
        return listener

    def _serve(self, app: Any, listener: socket.socket) -> None:
        config = uvicorn.Config(
            app, lifespan="on", log_level="warning", access_log=False, timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [listener]}, name="local-http", daemon=True
        )
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"the local stack could not serve on {self.host}:{self.port}")
            threading.Event().wait(0.01)

    def stop(self) -> None:
        """Stop everything ``start`` started."""
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        for poller in self.pollers:
            poller.stop()
        self.moto.stop()
