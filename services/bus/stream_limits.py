"""How much each JetStream stream keeps, and how start-up treats limits an operator changed.

Every stream has configured limits (``services/settings.py``, ADR 0079). Start-up applies them
to a new stream. On an existing stream it never overwrites a limit an operator changed on the
server: Corridor records the limits it applied in the stream's metadata (``corridor.limits``),
and a limit whose value on the server differs from that record was changed by someone else,
so it is kept and logged (``stream_limit_kept``) at every start. A limit nobody changed
follows the settings. Streams made before this record existed were made unlimited by Corridor,
so unlimited is what it recorded for them.

``reconcile`` is pure; ``apply_stream`` talks to the server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Final

import structlog
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StreamConfig
from nats.js.errors import APIError, NotFoundError

log = structlog.get_logger("corridor.bus")

METADATA_KEY: Final = "corridor.limits"
UNLIMITED: Final = -1
# The limits Corridor manages, with the value a stream made before this record existed had.
LIMIT_FIELDS: Final[dict[str, Any]] = {
    "max_age_s": 0,
    "max_bytes": UNLIMITED,
    "max_msgs": UNLIMITED,
    "discard": DiscardPolicy.OLD.value,
}


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """``max_age_s`` 0 and ``max_bytes``/``max_msgs`` -1 mean no limit of that kind.
    ``discard`` ``new`` refuses a publish to a full stream (nothing stored is lost: the
    publisher sees the error and retries); ``old`` drops the oldest message."""

    max_age_s: int = 0
    max_bytes: int = UNLIMITED
    max_msgs: int = UNLIMITED
    discard: str = DiscardPolicy.OLD.value

    def as_record(self) -> dict[str, Any]:
        return {
            "max_age_s": self.max_age_s,
            "max_bytes": self.max_bytes,
            "max_msgs": self.max_msgs,
            "discard": self.discard,
        }

    def applied_to(self, config: StreamConfig) -> StreamConfig:
        metadata = {**(config.metadata or {}), METADATA_KEY: json.dumps(self.as_record())}
        return replace(
            config,
            max_age=float(self.max_age_s),
            max_bytes=self.max_bytes,
            max_msgs=self.max_msgs,
            discard=DiscardPolicy(self.discard),
            metadata=metadata,
        )


@dataclass(frozen=True, slots=True)
class KeptLimit:
    stream: str
    limit: str
    operator_value: Any
    configured_value: Any


def on_server(config: StreamConfig) -> dict[str, Any]:
    """The managed limits of a stream as the server reports them, in ``StreamLimits`` units."""
    discard = config.discard or DiscardPolicy.OLD
    return {
        "max_age_s": int(config.max_age or 0),
        "max_bytes": UNLIMITED if config.max_bytes is None else int(config.max_bytes),
        "max_msgs": UNLIMITED if config.max_msgs is None else int(config.max_msgs),
        "discard": discard.value if isinstance(discard, DiscardPolicy) else str(discard),
    }


def recorded(config: StreamConfig) -> dict[str, Any]:
    """What Corridor applied last (unlimited for a stream from before the record)."""
    raw = (config.metadata or {}).get(METADATA_KEY)
    try:
        record = json.loads(raw) if raw else {}
    except ValueError:
        record = {}
    if not isinstance(record, dict):
        record = {}
    return {name: record.get(name, default) for name, default in LIMIT_FIELDS.items()}


def reconcile(
    existing: StreamConfig, wanted: StreamConfig, limits: StreamLimits
) -> tuple[StreamConfig, list[KeptLimit]]:
    """The config to put on an existing stream: ``wanted`` with ``limits``, except each limit an
    operator changed (its value differs from Corridor's record), which keeps its value. The
    record only names what Corridor applied, so an operator's value is kept at every start."""
    actual, last = on_server(existing), recorded(existing)
    chosen, applied, kept = {}, {}, []
    for name, configured in limits.as_record().items():
        if actual[name] != last[name]:
            chosen[name] = actual[name]
            applied[name] = last[name]
            if actual[name] != configured:
                kept.append(KeptLimit(existing.name or "", name, actual[name], configured))
        else:
            chosen[name] = applied[name] = configured
    config = StreamLimits(**chosen).applied_to(wanted)
    # The record keeps what Corridor applied, never the operator's value: so the next start
    # still sees the operator's change as one.
    metadata = {**(config.metadata or {}), METADATA_KEY: json.dumps(applied)}
    return replace(config, metadata=metadata), kept


class ReplicasRefused(RuntimeError):
    """The server cannot hold a stream with the configured number of copies (a single server
    asked for 3, or a cluster with fewer servers up than copies): the engine stops, because
    running with fewer copies than the operator asked for would be a silent downgrade."""


async def apply_stream(js: JetStreamContext, wanted: StreamConfig, limits: StreamLimits) -> None:
    """Create the stream with ``limits``, or bring an existing one in line (``reconcile``)."""
    assert wanted.name is not None
    try:
        info = await js.stream_info(wanted.name)
    except NotFoundError:
        try:
            await js.add_stream(limits.applied_to(wanted))
            return
        except APIError as exc:
            try:
                info = await js.stream_info(wanted.name)  # created by another process meanwhile
            except NotFoundError:
                raise _refused(wanted, exc) from None
    existing = info.config
    config, kept = reconcile(existing, wanted, limits)
    if wanted.deny_delete:
        # A stream that refuses deletes (the signed checkpoints) is never updated, by the
        # engine either (ADR 0067): an update could set limits that drop what no delete may.
        # The stream in place is kept as it is.
        if (
            kept
            or existing.subjects != config.subjects
            or _own(existing.metadata) != _own(config.metadata)
        ):
            log.warning("checkpoint_stream_config_differs", stream=wanted.name)
        if _replicas(existing) != _replicas(wanted):
            # Its copies too: the engine's credential may not update it (ADR 0067), so an
            # operator moves it, once, with an admin credential (ADR 0195).
            log.error(
                "stream_replicas_kept",
                stream=wanted.name,
                server=_replicas(existing),
                configured=_replicas(wanted),
                detail=f"nats stream edit {wanted.name} --replicas {_replicas(wanted)}, as an "
                "operator: the engine may not update this stream",
            )
        return
    for item in kept:
        log.warning(
            "stream_limit_kept",
            stream=item.stream,
            limit=item.limit,
            operator_value=item.operator_value,
            configured_value=item.configured_value,
            detail="changed on the server, so kept; set it there or restore Corridor's value",
        )
    if existing.retention != config.retention:
        # The server cannot change a stream to or from work-queue retention (CORRIDOR_CMD
        # before ADR 0079): keep the stream as it is and say how to move it.
        log.error(
            "stream_retention_kept",
            stream=wanted.name,
            server=_retention(existing.retention),
            configured=_retention(config.retention),
            detail="runbooks/retention.md: drain and recreate the stream to change it",
        )
        config = replace(config, retention=existing.retention)
    await _update(js, config, existing)


async def _update(js: JetStreamContext, config: StreamConfig, existing: StreamConfig) -> None:
    """``update_stream``; a change of copies is logged, and refused copies stop the engine."""
    try:
        await js.update_stream(config)
    except APIError as exc:
        if _replicas(existing) != _replicas(config):
            raise _refused(config, exc) from None
        raise
    if _replicas(existing) != _replicas(config):
        # The server adds or drops peers and catches the new ones up from the leader while
        # the stream keeps taking publishes (nats-server scales a stream in place).
        log.warning(
            "stream_replicas_changed",
            stream=config.name,
            before=_replicas(existing),
            after=_replicas(config),
        )


def _replicas(config: StreamConfig) -> int:
    return int(config.num_replicas or 1)


def _refused(config: StreamConfig, exc: APIError) -> ReplicasRefused:
    return ReplicasRefused(
        f"nats-server refused stream {config.name} with {_replicas(config)} replicas "
        f"(bus_stream_replicas): {exc.description or exc}; a single server holds 1, a "
        "cluster at most as many as it has servers up"
    )


def _own(metadata: dict[str, str] | None) -> dict[str, str]:
    # nats-server adds its own keys (``_nats.*``) to every stream's metadata.
    return {k: v for k, v in (metadata or {}).items() if not k.startswith("_nats.")}


def _retention(value: RetentionPolicy | str | None) -> str:
    return value.value if isinstance(value, RetentionPolicy) else str(value)
