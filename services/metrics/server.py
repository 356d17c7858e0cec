"""``/metrics``, ``/healthz`` and ``/readyz`` on one loopback port, served from a thread so a
scrape or a probe is answered even while the event loop is busy (ADR 0153).

- ``/metrics``: the Prometheus text format from ``prometheus_client`` (its WSGI app).
- ``/healthz``: 200 while the process serves at all (liveness: restart it if this fails).
- ``/readyz``: 200 when the process's ``ready`` check passes, else 503 with the reason
  (readiness: send it no traffic until it passes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import CollectorRegistry

# None: ready; a string: why not.
ReadyCheck = Callable[[], str | None]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would drown the JSON logs; errors still raise."""


def wsgi_app(ready: ReadyCheck, registry: CollectorRegistry = REGISTRY) -> Callable[..., Any]:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok")
        if path == "/readyz":
            reason = ready()
            if reason is None:
                return _text(start_response, "200 OK", "ready")
            return _text(start_response, "503 Service Unavailable", f"not ready: {reason}")
        return _text(start_response, "404 Not Found", "not found")

    return app


def _text(start_response: Callable[..., Any], status: str, body: str) -> list[bytes]:
    data = (body + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(data)))])  # fmt: skip
    return [data]


@dataclass
class MetricsServer:
    url: str
    _server: WSGIServer
    _thread: threading.Thread

    @classmethod
    def start(
        cls, *, host: str = "127.0.0.1", port: int = 0, ready: ReadyCheck = lambda: None
    ) -> MetricsServer:
        server = make_server(
            host, port, wsgi_app(ready), server_class=ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )  # fmt: skip
        thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
        thread.start()
        return cls(url=f"http://{host}:{server.server_port}", _server=server, _thread=thread)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
