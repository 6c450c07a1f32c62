"""A WebSub hub stand-in on 127.0.0.1 for tests and the publish benchmark: it records every publish
ping (form fields, arrival time) and answers with the statuses it is told to, then 204."""

from __future__ import annotations

import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    mode: str
    url: str
    content_type: str
    status: int            # what the hub answered
    at: float              # time.monotonic() on arrival


class HubServer:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: list[int] = []     # statuses to answer next, in order; then 204
        self.delay = 0.0                 # seconds to sit on each request before answering
        self._lock = threading.Condition()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                arrived = time.monotonic()
                form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode("ascii"))
                time.sleep(hub.delay)
                with hub._lock:
                    status = hub.answers.pop(0) if hub.answers else 204
                    hub.received.append(Received(form["hub.mode"][0], form["hub.url"][0],
                                                 self.headers["Content-Type"], status, arrived))
                    hub._lock.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hub"

    def start(self) -> HubServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, predicate, timeout: float = 20) -> list[Received]:  # noqa: ANN001 - list → bool
        """Wait until `predicate(received)` holds; the pings so far, or AssertionError after `timeout`."""
        with self._lock:
            if not self._lock.wait_for(lambda: predicate(self.received), timeout):
                raise AssertionError(f"hub did not get the expected pings in {timeout} s: {self.received}")
            return list(self.received)
