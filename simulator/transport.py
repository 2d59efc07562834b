"""`SimulatorTransport`: an httpx2 transport that answers from a `SimulatedAPI` in-process.

Give it to the real SDK so request building, response parsing, typed errors and
retries are all exercised::

    client = anthropic.Anthropic(
        api_key="sim",
        base_url="http://simulator.local",
        http_client=anthropic.DefaultHttpxClient(transport=SimulatorTransport(api)),
    )

The request's read timeout (set by the SDK from its `timeout` option) is passed to
the API; an answer slower than that raises httpx2.ReadTimeout after sleeping the
timeout, which the SDK turns into APITimeoutError (and retries) as with a socket.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx2

from .api import SimulatedAPI
from .errors import SimulatedTimeout
from .faults import CUT_HEADER, TRICKLE_HEADER
from .streaming import schedule


class SimulatorTransport(httpx2.BaseTransport):
    def __init__(self, api: SimulatedAPI) -> None:
        self.api = api

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        body = request.read()
        timeout = (request.extensions.get("timeout") or {}).get("read")
        path = request.url.raw_path.decode("ascii")
        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in request.headers.raw
        }
        try:
            status, response_headers, payload = self.api.handle(
                request.method, path, headers, body, timeout=timeout
            )
        except SimulatedTimeout as exc:
            raise httpx2.ReadTimeout(str(exc), request=request) from exc
        trickle = float(response_headers.pop(TRICKLE_HEADER, 0) or 0)
        cut = response_headers.pop(CUT_HEADER, None)
        if trickle <= 0 and cut is None:
            return httpx2.Response(
                status, headers=response_headers, content=payload, request=request
            )
        sse = response_headers.get("content-type", "").startswith("text/event-stream")
        return httpx2.Response(
            status,
            headers={**response_headers, "content-length": str(len(payload))},
            content=_paced(
                request, payload, trickle, sse, timeout, None if cut is None else int(cut)
            ),
            request=request,
        )


def _paced(
    request: httpx2.Request,
    payload: bytes,
    seconds: float,
    sse: bool,
    timeout: float | None,
    cut: int | None,
) -> Iterator[bytes]:
    """The body as the server sends it: in pieces over ``seconds`` (a read timeout only if one
    gap exceeds it), and dropped at byte ``cut`` for a stream_cut fault."""
    body = payload if cut is None else payload[:cut]
    for wait, piece in schedule(body, seconds if cut is None else seconds / 2, sse=sse):
        if timeout is not None and wait > timeout:
            time.sleep(timeout)
            raise httpx2.ReadTimeout(f"no data for {timeout:g}s mid-stream", request=request)
        time.sleep(wait)
        yield piece
    if cut is not None:
        raise httpx2.RemoteProtocolError(
            "peer closed connection without sending complete message body (simulated stream_cut)",
            request=request,
        )
