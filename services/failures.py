"""Which database and bus errors are worth retrying: one table, used by every writer.

Every error a writer meets (the processor's appends and reads, the relay, the deadline
scheduler, the checkpointer, the API's reads) is exactly one of:

- ``TRANSIENT``: the same request can succeed later unchanged (the server is restarting,
  the connection dropped, a lock or serialization race). Retried: the caller gets
  ``unavailable``, a stream consumer naks, a loop backs off.
- ``DEFINITE``: the same request will fail the same way (this command's data, a privilege,
  a bug). Refused with a code, and in a group commit only the command that caused it
  (``services/engine/isolation.py``).

PostgreSQL errors are judged by SQLSTATE: first the full code, then its two-character class.
The codes and classes are PostgreSQL's, Appendix A "PostgreSQL Error Codes":
https://www.postgresql.org/docs/current/errcodes-appendix.html
Anything not listed is ``DEFINITE``: a refusal someone sees beats a retry loop that hides a bug.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import asyncpg
import nats.errors
import nats.js.errors
from asyncpg.exceptions import _base as asyncpg_base

from services.bus.port import NoResponders, NotFound, PublishRefused


class Kind(enum.Enum):
    TRANSIENT = "transient"
    DEFINITE = "definite"


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Kind
    reason: str

    @property
    def transient(self) -> bool:
        return self.kind is Kind.TRANSIENT


T, D = Kind.TRANSIENT, Kind.DEFINITE

# SQLSTATE class (two characters) -> verdict.
SQLSTATE_CLASSES: dict[str, Verdict] = {
    "08": Verdict(T, "connection exception: the server went away or is not there yet"),
    "40": Verdict(T, "transaction rollback (serialization failure, deadlock): retry is the "
                     "documented remedy, and nothing of the transaction was committed"),
    "53": Verdict(T, "insufficient resources (too many connections, disk full, out of "
                     "memory): passes when the resource comes back"),
    "57": Verdict(T, "operator intervention: shutdown (57P01), crash of another backend "
                     "(57P02), 'the database system is starting up' (57P03), a cancelled "
                     "statement (57014)"),
    "58": Verdict(T, "system error outside PostgreSQL (I/O): may pass"),
    "22": Verdict(D, "data exception: this command's data cannot be stored, e.g. U+0000 "
                     "(22021, 22P05); the edge refuses those first (schemas/storable.py)"),
    "23": Verdict(D, "integrity constraint violation: the same rows break it again"),
    "42": Verdict(D, "syntax error or access rule violation (a missing privilege): a "
                     "deployment fault the same request meets again"),
    "XX": Verdict(D, "internal error or corruption: an operator must look"),
}  # fmt: skip

# Full SQLSTATE -> verdict, where it differs from its class.
SQLSTATE_CODES: dict[str, Verdict] = {
    "57P04": Verdict(D, "database dropped: it will not come back by itself"),
    "25006": Verdict(T, "read-only transaction: a standby during a failover, primary soon"),
    "55P03": Verdict(T, "lock not available: another transaction holds it for now"),
    "55006": Verdict(T, "object in use: another session holds it for now"),
}

# Exception type -> verdict, first match wins (so subclasses come before their bases). A
# PostgresError not listed here is judged by its SQLSTATE.
TYPES: tuple[tuple[type[BaseException], Verdict], ...] = (
    (asyncpg_base.DataError, Verdict(D, "asyncpg cannot encode this command's arguments "
                                        "(e.g. a lone surrogate): it never reached the server")),
    (asyncpg_base.ClientConfigurationError, Verdict(D, "the client is misconfigured")),
    (asyncpg_base.UnsupportedClientFeatureError, Verdict(D, "a feature this client lacks")),
    (asyncpg.InterfaceError, Verdict(T, "the client's connection is closed or closing (a pool "
                                        "reset, a restart under way)")),
    (OSError, Verdict(T, "socket error: connection refused or reset")),
    (TimeoutError, Verdict(T, "no answer in time (nats-py's timeouts are TimeoutErrors too)")),
    (nats.js.errors.ServiceUnavailableError, Verdict(T, "JetStream 503: not ready, no leader")),
    (nats.js.errors.ServerError, Verdict(T, "JetStream 5xx: the server's own trouble")),
    (nats.js.errors.NoStreamResponseError, Verdict(T, "no JetStream ack: stream leader away")),
    (nats.js.errors.APIError, Verdict(D, "JetStream 4xx (bad request, not found): the same "
                                         "request is refused again")),
    (nats.errors.NoRespondersError, Verdict(T, "nobody subscribed yet: a restart under way")),
    # The bus port's own (ADR 0092), judged as the nats-py errors the adapter maps to them.
    (NoResponders, Verdict(T, "nobody subscribed yet, or no stream leader: a restart under way")),
    (NotFound, Verdict(D, "no such stream or message: the same request is refused again")),
    (PublishRefused, Verdict(D, "JetStream refused the publish: refused again as it is")),
    (nats.errors.ConnectionClosedError, Verdict(T, "connection closed: reconnect and retry")),
    (nats.errors.ConnectionReconnectingError, Verdict(T, "reconnecting to the server")),
    (nats.errors.ConnectionDrainingError, Verdict(T, "draining: a new connection will serve")),
    (nats.errors.StaleConnectionError, Verdict(T, "stale connection (missed pings, EOF)")),
    (nats.errors.OutboundBufferLimitError, Verdict(T, "client buffer full while reconnecting")),
    (nats.errors.NoServersError, Verdict(T, "no server reachable yet")),
    (nats.errors.Error, Verdict(D, "bad subject, payload over max_payload, authorization: "
                                   "the same publish is refused again")),
)  # fmt: skip

_UNLISTED = Verdict(D, "not in the table: refused, so that a bug is seen and not retried")


def classify(exc: BaseException) -> Verdict:
    for cls, verdict in TYPES:
        if isinstance(exc, cls):
            return verdict
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        return SQLSTATE_CODES.get(sqlstate) or SQLSTATE_CLASSES.get(sqlstate[:2], _UNLISTED)
    return _UNLISTED


def is_transient(exc: BaseException) -> bool:
    return classify(exc).transient
