"""A TCP proxy on 127.0.0.1 that a test can use to drop every live connection at once.

Put it between a client and a server to simulate a network failure mid-response::

    with TcpProxy("127.0.0.1", server_port) as proxy:
        ...  # point the client at proxy.base_url
        proxy.cut()  # both ends of every open connection see it close
        assert proxy.connections > 1  # the client came back

It forwards bytes as they arrive, in both directions, so streamed responses (SSE)
pass through unbuffered. Connections made after a ``cut`` are forwarded as usual.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Self

_CHUNK = 64 * 1024
_ACCEPT_POLL_SECONDS = 0.05


class _Link:
    """One client connection and its upstream twin."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self._lock = threading.Lock()
        self._open_directions = 2

    def pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy ``source`` to ``sink`` until either side ends; close both when both are done."""
        try:
            while data := source.recv(_CHUNK):
                sink.sendall(data)
            # A clean end of one direction is passed on; the other may still be talking.
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            self.sever()
        with self._lock:
            self._open_directions -= 1
            last = self._open_directions == 0
        if last:
            self.client.close()
            self.upstream.close()

    def sever(self) -> None:
        """End both directions now; the blocked ``recv`` calls return and the pumps finish."""
        for end in (self.client, self.upstream):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its peer


class TcpProxy:
    """Forwards connections on a free local port to ``upstream_host:upstream_port``.

    Args:
        upstream_host: Where connections are forwarded.
        upstream_port: The port there.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        """Prepare the proxy; ``start`` (or ``with``) binds a free port."""
        self.upstream = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._accepted = 0
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the proxy, without a trailing slash."""
        if self._listener is None:
            raise RuntimeError("the proxy is not started")
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    @property
    def connections(self) -> int:
        """How many client connections the proxy has accepted so far."""
        with self._lock:
            return self._accepted

    def start(self) -> Self:
        """Listen on a free port and forward from a background thread."""
        self._stopping.clear()
        self._listener = socket.create_server(("127.0.0.1", 0))
        # accept() is not woken by close() from another thread; a timeout lets stop() end it.
        self._listener.settimeout(_ACCEPT_POLL_SECONDS)
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()
        return self

    def cut(self) -> None:
        """Drop every connection open now, as a failing network would."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.sever()

    def stop(self) -> None:
        """Drop every connection and stop listening."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        self.cut()
        self._listener = self._thread = None

    def __enter__(self) -> Self:
        """Start forwarding for the ``with`` block."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop forwarding when the ``with`` block ends."""
        self.stop()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _address = self._listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            link = _Link(client, upstream)
            with self._lock:
                self._accepted += 1
                self._links.append(link)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=link.pump, args=(source, sink), daemon=True).start()
