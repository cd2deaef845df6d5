"""An HTTP relay in front of the real API, for the SDK's retry tests: it forwards each request
to the API unchanged, except that it can first answer the next requests itself (a 503 or 429
as a load balancer or our rate limit would), stall them past the client's timeout, or forward
one and then drop the connection without answering (the API acted, the client never heard).
It records every request it received (method, path, headers)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Relay:
    def __init__(self, target_url: str):
        self.target = httpx.Client(base_url=target_url, timeout=30)
        self.seen: list[Seen] = []
        self._faults: deque[tuple[str, dict]] = deque()
        self._lock = threading.Lock()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                relay._record(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                fault, options = relay._next_fault()
                if fault == "answer":
                    payload = b'{"error": {"code": "relay", "message": "answered by the test relay"}}'
                    self.send_response(options["status"])
                    for name, value in options.get("headers", {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if fault == "stall":
                    time.sleep(options["seconds"])
                    self.close_connection = True
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                answer = relay.target.request(self.command, self.path, content=body, headers=headers)
                if fault == "drop":
                    self.close_connection = True  # the API acted; the client gets no answer
                    return
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in _HOP_BY_HOP | {"content-encoding"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer_next(self, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        """Answer the next `times` requests with `status` instead of forwarding them."""
        self._add("answer", times, status=status, headers=headers or {})

    def stall_next(self, seconds: float, times: int = 1) -> None:
        """Hold the next requests `seconds`, then close the connection without forwarding them."""
        self._add("stall", times, seconds=seconds)

    def drop_next(self, times: int = 1) -> None:
        """Forward the next requests, then close the connection without answering."""
        self._add("drop", times)

    def requests_to(self, path_prefix: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path.startswith(path_prefix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.target.close()

    def _add(self, fault: str, times: int, **options) -> None:
        with self._lock:
            self._faults.extend([(fault, options)] * times)

    def _next_fault(self) -> tuple[str | None, dict]:
        with self._lock:
            return self._faults.popleft() if self._faults else (None, {})

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)
