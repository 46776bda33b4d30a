"""An ASGI front that turns HTTP requests into API Gateway HTTP API (payload 2.0) events.

Only the routes the template declares for the function are served; others get
API Gateway's own 404. The handler runs in a worker thread, as a Lambda invocation
would run beside others. A function that has not answered when API Gateway would stop
waiting gets its 504; the thread goes on (Lambda would stop the function at its own
timeout, which the template sets no longer than this).
"""

from __future__ import annotations

import base64
import logging
import re
import time
import uuid

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from stepstream_local.cfn import Template
from stepstream_local.runtime import LocalFunction

logger = logging.getLogger(__name__)

# How long an HTTP API waits for its integration, at most.
INTEGRATION_TIMEOUT_SECONDS = 30.0


def _route_pattern(path: str) -> re.Pattern[str]:
    regex = re.sub(r"\\\{[^}]+\\\+\\\}", ".+", re.escape(path))
    regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", regex)
    return re.compile(f"^{regex}$")


def http_api_routes(template: Template, logical_id: str) -> list[tuple[str, str]]:
    """The (method, path) pairs of the function's ``HttpApi`` events."""
    props = template.resources("AWS::Serverless::Function")[logical_id]["Properties"]
    routes = []
    for event in props.get("Events", {}).values():
        if event["Type"] == "HttpApi":
            spec = event.get("Properties", {})
            routes.append((spec.get("Method", "ANY").upper(), spec.get("Path", "/{proxy+}")))
    return routes


def _text_body(raw: bytes, content_type: str) -> tuple[str, bool]:
    textual = not content_type or "json" in content_type or content_type.startswith("text/")
    if textual:
        try:
            return raw.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(raw).decode("ascii"), True


class HttpApiFront:
    """Serves one function's HTTP API routes.

    Args:
        function: The API function.
        routes: Its (method, path) routes from the template.
    """

    def __init__(self, function: LocalFunction, routes: list[tuple[str, str]]) -> None:
        self.function = function
        # Specific routes first: API Gateway prefers them to greedy ones.
        ordered = sorted(routes, key=lambda route: "+" in route[1])
        self.routes = [(method, path, _route_pattern(path)) for method, path in ordered]

    def _match(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        for route_method, route_path, pattern in self.routes:
            if route_method in ("ANY", method) and pattern.match(path):
                params = {"proxy": path.lstrip("/")} if "{proxy+}" in route_path else {}
                return f"{route_method} {route_path}", params
        return None

    async def event(self, request: Request, route_key: str, params: dict[str, str]) -> dict:
        """The payload 2.0 event API Gateway would send for ``request``."""
        raw = await request.body()
        body, is_b64 = _text_body(raw, request.headers.get("content-type", ""))
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        query: dict[str, str] = {}
        for key, value in request.query_params.multi_items():
            query[key] = f"{query[key]},{value}" if key in query else value
        return {
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": request.url.path,
            "rawQueryString": request.url.query,
            "headers": headers,
            "queryStringParameters": query or None,
            "pathParameters": params or None,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "local",
                "domainName": request.url.hostname or "127.0.0.1",
                "http": {
                    "method": request.method,
                    "path": request.url.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": request.client.host if request.client else "127.0.0.1",
                    "userAgent": request.headers.get("user-agent", ""),
                },
                "requestId": str(uuid.uuid4()),
                "routeKey": route_key,
                "stage": "$default",
                "timeEpoch": int(time.time() * 1000),
            },
            "body": body or None,
            "isBase64Encoded": is_b64,
        }

    async def __call__(self, request: Request) -> Response:
        """Answer ``request`` through the function, as API Gateway would."""
        matched = self._match(request.method, request.url.path)
        if matched is None:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        event = await self.event(request, *matched)
        wait = min(float(self.function.timeout), INTEGRATION_TIMEOUT_SECONDS)
        try:
            with anyio.move_on_after(wait):
                result = await anyio.to_thread.run_sync(self.function.invoke, event,
                                                        abandon_on_cancel=True)
                return _response(result)
        except Exception:  # noqa: BLE001 - API Gateway answers 500 for a crashed function
            logger.exception("function crashed", extra={"function": self.function.logical_id})
            return JSONResponse({"message": "Internal Server Error"}, status_code=500)
        logger.warning("integration timed out", extra={"function": self.function.logical_id})
        return JSONResponse({"message": "Endpoint request timed out"}, status_code=504)


def _response(result: dict) -> Response:
    """The HTTP response API Gateway makes of a function's payload 2.0 result."""
    body = result.get("body") or ""
    content = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    headers = dict(result.get("headers") or {})
    response = Response(content, status_code=int(result.get("statusCode", 200)))
    response.headers.update(headers)
    for cookie in result.get("cookies") or []:
        response.headers.append("set-cookie", cookie)
    return response
