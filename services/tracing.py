"""Traces: W3C trace context from the submitter, through the engine, the relay and the executor,
to the outcome (ADR 0154).

A command that arrives with a ``traceparent`` NATS header is decided inside a span that is its
child; the span's own ``traceparent`` is stored in the metadata of the events it commits. The
relay publishes those events with the header (inside a span of its own), the executor pays a
work order inside a span that is the relay's child and reports the outcome with its own
``traceparent``, so the outcome's events close the same trace.

Untraced traffic costs a branch: without an incoming ``traceparent`` no span is made at all.
Without a configured SDK (``tracing_exporter = "none"``) spans are the API's no-op spans, which
pass the incoming context through unchanged.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator, Mapping
from typing import Final

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT: Final = "traceparent"
# version-trace_id-parent_id-flags, lowercase hex (W3C Trace Context, section 3.2). A value that
# does not match is ignored, as the specification says, never an error.
_TRACEPARENT_RE: Final = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")

_propagator: Final = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("corridor")

Attributes = Mapping[str, str | int | bool]


def valid(traceparent: str | None) -> str | None:
    """``traceparent`` if it is a well-formed W3C value, else ``None``."""
    if traceparent is None or not _TRACEPARENT_RE.match(traceparent):
        return None
    return traceparent


def current() -> str | None:
    """The ``traceparent`` of the current span, if any (to put in an outgoing message)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(TRACEPARENT)


@contextlib.contextmanager
def child_span(
    name: str, traceparent: str | None, attributes: Attributes | None = None
) -> Iterator[str | None]:
    """A span that continues ``traceparent``; yields its own ``traceparent`` for what it causes.
    ``None`` in, nothing made and ``None`` out."""
    if traceparent is None:
        yield None
        return
    parent = _propagator.extract({TRACEPARENT: traceparent})
    with _tracer.start_as_current_span(name, context=parent, attributes=attributes):
        yield current()


def configure(exporter: str) -> None:
    """Install the SDK with ``exporter``: ``console`` (JSON lines on stderr) or ``none``."""
    if exporter == "none":
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    assert exporter == "console", exporter
    provider = TracerProvider(resource=Resource.create({"service.name": "corridor"}))
    provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    trace.set_tracer_provider(provider)
