"""The HTTP layer shared by the test servers (the GitHub emulator, the OpenAI-compatible server).

Both speak HTTP/1.1 with keep-alive from a threaded stdlib server, never print (a test's output
stays clean of anything a client sent), read bodies by Content-Length or chunked encoding, and
track open connections so ``stop()`` can hang up on idle keep-alive clients.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:  # a client hung up: nothing to print
        pass


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sys_version = ""

    def owner(self) -> Any:
        """The test server object (has ``_track(connection, add=...)``)."""
        raise NotImplementedError

    def setup(self) -> None:
        super().setup()
        self.owner()._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.owner()._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def log_error(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""


class Served:
    """Start/stop of a test server in a daemon thread; subclasses set the classes and two hooks.

    ``stop()`` also hangs up on idle keep-alive connections, so handler threads parked on them wake.
    """

    server_class: type[QuietServer]
    handler_class: type[QuietHandler]
    thread_name = "test-server"
    _lock: Any

    def _init_served(self) -> None:
        self._connections: set[socket.socket] = set()
        self._server: QuietServer | None = None
        self._thread: threading.Thread | None = None

    def _bound(self, server: QuietServer) -> None:
        """Called once the socket is bound, before serving: attach ``self`` and note the URL."""

    def _stopping_now(self) -> None:
        """Called first thing in ``stop()``."""

    def start(self) -> Any:
        if self._server is not None:
            return self
        server = self.server_class(("127.0.0.1", 0), self.handler_class)
        self._bound(server)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping_now()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)
