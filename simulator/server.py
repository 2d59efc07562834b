"""A standalone threaded HTTP server on loopback serving a `SimulatedAPI`.

Used for load and fault tests where the SDK must go over real sockets. The
server honours the SDK's ``x-stainless-read-timeout`` header: a slower answer is
abandoned (connection closed) shortly after the client has given up, so slow faults
do not pin server threads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .api import SimulatedAPI
from .errors import SimulatedTimeout
from .faults import CUT_HEADER, TRICKLE_HEADER
from .streaming import schedule

logger = logging.getLogger(__name__)

TIMEOUT_GRACE_SECONDS = 0.5


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True  # in-flight slow answers must not block shutdown

    def __init__(self, address: tuple[str, int], api: SimulatedAPI) -> None:
        self.api = api
        super().__init__(address, _Handler)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the SDK's connection pool expects
    server: SimulatorServer

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        timeout = None
        with contextlib.suppress(KeyError, ValueError):
            timeout = float(headers["x-stainless-read-timeout"]) + TIMEOUT_GRACE_SECONDS
        try:
            status, response_headers, payload = self.server.api.handle(
                self.command, self.path, headers, body, timeout=timeout
            )
        except SimulatedTimeout:
            self.close_connection = True  # the client gave up; drop the connection
            return
        trickle = float(response_headers.pop(TRICKLE_HEADER, 0) or 0)
        cut = response_headers.pop(CUT_HEADER, None)
        self.send_response(status)
        for key, value in response_headers.items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if trickle <= 0 and cut is None:
            self.wfile.write(payload)
            return
        # A paced body: in pieces, each gap shorter than the whole delay; a stream_cut drops
        # the connection part-way (the client sees an incomplete body).
        sse = response_headers.get("content-type", "").startswith("text/event-stream")
        body = payload if cut is None else payload[: int(cut)]
        try:
            for wait, piece in schedule(body, trickle if cut is None else trickle / 2, sse=sse):
                time.sleep(wait)
                self.wfile.write(piece)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up mid-stream
        if cut is not None:
            self.close_connection = True

    do_GET = _serve
    do_POST = _serve
    do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        logger.debug("simulator %s " + format, self.address_string(), *args)


def make_server(api: SimulatedAPI, host: str = "127.0.0.1", port: int = 0) -> SimulatorServer:
    """Bind a server (port 0 picks a free port; see `server.base_url`)."""
    return SimulatorServer((host, port), api)


def serve(host: str, port: int, api: SimulatedAPI) -> None:
    """Serve forever (blocking) until interrupted."""
    server = make_server(api, host, port)
    logger.info("simulated Anthropic API on %s", server.base_url)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def serve_in_thread(
    api: SimulatedAPI, host: str = "127.0.0.1", port: int = 0
) -> tuple[SimulatorServer, threading.Thread]:
    """Start a server in a daemon thread; stop it with server.shutdown(); server.server_close()."""
    server = make_server(api, host, port)
    thread = threading.Thread(target=server.serve_forever, name="simulator-server", daemon=True)
    thread.start()
    return server, thread
