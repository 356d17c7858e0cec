"""Request/reply API on core NATS: ``corridor.api.v1.intents.*``, ``corridor.api.v1.policy.*``
and ``corridor.api.v1.agents.*`` (agent keys, ADR 0068).

Commands are answered after commit; queries from the engine's own state (see ``subjects``).
Every command and intent query is bound to the identity its subject names (ADR 0061).
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import structlog

from schemas import codec, errors, limits
from schemas.agent_key_messages import ListAgentKeys
from schemas.commands import GetPaymentIntent, GetPaymentIntentStatus
from schemas.policy_messages import GetPolicy, ListCorridors
from schemas.replies import CommandRejected
from services.bus import subjects
from services.bus.port import Bus, Message, Subscription
from services.domain.routing import CorridorTable
from services.engine.processor import CommandProcessor
from services.engine.reconciliation_cursor import ReconciliationCursors
from services.engine.views import corridors_view
from services.failures import is_transient
from services.intake.identity import Authenticator
from services.intake.lsp_orders import answer_lsp
from services.intake.parsing import parse_command, query_of, query_reader
from services.intake.receives import RECEIVE_QUERIES, answer_receive_query
from services.intake.webhooks import answer_webhooks

log = structlog.get_logger("corridor.api")

# Requests being handled at once; beyond this the subscription stops reading (backpressure).
INFLIGHT_MAX = 4096

Q = TypeVar("Q")
# Payments' verbs, receives' (ADR 0220) and channel operations' (ADR 0234): request/reply
# under one prefix.
_INTENT_VERBS = {
    **subjects.VERBS, **subjects.RECEIVE_VERBS, **subjects.CHANNEL_VERBS,
    **subjects.REBALANCE_VERBS,  # ADR 0244
    **subjects.JIT_VERBS,  # ADR 0261
    **subjects.PAYEE_VERBS,  # ADR 0270
}  # fmt: skip


def _query(msg: Message, expected: type[Q]) -> Q:
    """Decode a query sent to a subject that answers ``expected`` only."""
    query = codec.decode_request(msg.data)
    if not isinstance(query, expected):
        raise errors.UnknownType(f"{msg.subject} answers {expected.__name__} only", field="type")
    return query


class ApiService:
    def __init__(
        self,
        bus: Bus,
        processor: CommandProcessor,
        *,
        corridors: CorridorTable | None = None,
        authenticator: Authenticator | None = None,
        recon_cursors: ReconciliationCursors | None = None,
    ) -> None:
        self._bus = bus
        self._processor = processor
        # Stores a reconciler's cursor after its report commits (ADR 0163).
        self._recon_cursors = recon_cursors
        self._corridors = corridors or CorridorTable(corridors={})
        self._auth = authenticator or Authenticator(None, self._corridors)
        # Set whenever a request finishes. Not an asyncio.Semaphore: on Python 3.11 every
        # acquire() scans the waiters, which cost about 6 % of the engine under load.
        self._room = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        for wildcard in (
            subjects.API_WILDCARD,
            subjects.POLICY_API_WILDCARD,
            subjects.AGENTS_API_WILDCARD,
            subjects.RECON_API_WILDCARD,
            subjects.WEBHOOKS_API_WILDCARD,
            subjects.LSP_API_WILDCARD,  # ADR 0252
        ):
            self._subs.append(
                await self._bus.subscribe(
                    wildcard,
                    self._on_message,
                    queue=subjects.INTAKE_QUEUE_GROUP,
                    pending_msgs_max=INFLIGHT_MAX * 4,
                )
            )
        # The port's subscribe returns once the subscription is live: a request sent right
        # after start does not meet "no responders".

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_message(self, msg: Message) -> None:
        status = msg.subject.startswith(subjects.API_STATUS)
        if status and msg.reply and await self._status_now(msg):
            return
        # nats-py runs one callback at a time per subscription; handing each request to its own
        # task lets many commands meet in one group-commit batch.
        while len(self._tasks) >= INFLIGHT_MAX:
            self._room.clear()
            await self._room.wait()
        task = asyncio.create_task(self._handle(msg))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _status_now(self, msg: Message) -> bool:
        """Answer a status query from the state cache right here, without a task (executors
        ask for every order they may have seen before); ``False`` leaves it to the general path
        (errors, cache miss)."""
        asked = query_of(msg.subject)
        if asked is None or asked[0] != "status":
            return False
        try:
            reader = query_reader(*asked, self._auth)
            query = codec.decode_request(msg.data)
        except errors.CorridorError:
            return False
        if not isinstance(query, GetPaymentIntentStatus):
            return False
        status = self._processor.cached_status(query.intent_id, reader=reader)
        if status is None:
            return False
        await msg.respond(codec.encode(status))
        return True

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._room.set()

    async def _handle(self, msg: Message) -> None:
        structlog.contextvars.clear_contextvars()
        reply: Any
        try:
            reply = await self._answer(msg)
        except errors.CorridorError as exc:
            reply = CommandRejected(error=exc.detail())
        except Exception as exc:
            if is_transient(exc):  # a read while PostgreSQL restarts: ask again
                log.warning("api_unavailable", subject=msg.subject, error=type(exc).__name__)
                reply = CommandRejected(error=errors.Unavailable("unavailable; retry").detail())
            else:
                log.exception("api_internal_error", subject=msg.subject)
                reply = CommandRejected(
                    error=errors.CorridorError("internal error", code="internal_error").detail()
                )
        if isinstance(reply, CommandRejected):
            log.info("command_refused", subject=msg.subject, code=reply.error.code,
                     field=reply.error.field)  # fmt: skip
        if msg.reply:
            await msg.respond(self._encode_reply(reply))

    async def _answer(self, msg: Message) -> Any:
        subject = msg.subject
        asked = query_of(subject)
        if asked is not None:
            reader = query_reader(*asked, self._auth)
            if asked[0] == "status":
                query = codec.decode_request(msg.data)
                if isinstance(query, RECEIVE_QUERIES):  # an executor's receives (ADR 0221)
                    return await answer_receive_query(query, reader, self._processor)
                status_query = _query(msg, GetPaymentIntentStatus)
                return await self._processor.status(status_query.intent_id, reader=reader)
            get_query = _query(msg, GetPaymentIntent)
            structlog.contextvars.bind_contextvars(intent_id=get_query.intent_id)
            return await self._processor.view(get_query.intent_id, reader=reader)
        # The two policy queries sit under the policy prefix: match them before the verbs.
        if subject == subjects.POLICY_SHOW:
            _query(msg, GetPolicy)
            return await self._processor.current_policy_view()
        if subject == subjects.POLICY_CORRIDORS:
            _query(msg, ListCorridors)
            return corridors_view(self._corridors)
        if subject == subjects.AGENTS_LIST or subject.startswith(subjects.AGENTS_LIST + "."):
            return self._agent_keys(msg)
        if subject.startswith(subjects.AGENTS_API_PREFIX + "."):
            envelope = parse_command(
                subject, subjects.AGENTS_API_PREFIX, msg.data, msg.headers,
                authenticator=self._auth, verbs=subjects.AGENT_KEY_VERBS,
            )  # fmt: skip
            return await self._processor.execute(envelope)
        if subject.startswith(subjects.LSP_API_PREFIX + "."):  # ADR 0252
            return await answer_lsp(msg, self._auth, self._processor)
        if subject.startswith(subjects.WEBHOOKS_API_PREFIX + "."):
            return await answer_webhooks(msg, self._auth, self._processor)
        if subject.startswith(subjects.RECON_API_PREFIX + "."):
            envelope = parse_command(
                subject, subjects.RECON_API_PREFIX, msg.data, msg.headers,
                authenticator=self._auth, verbs=subjects.RECON_VERBS,
            )  # fmt: skip
            recon_reply = await self._processor.execute(envelope)
            if self._recon_cursors is not None:
                await self._recon_cursors.after(envelope.command, recon_reply)
            return recon_reply
        if subject.startswith(subjects.POLICY_API_PREFIX + "."):
            envelope = parse_command(
                subject, subjects.POLICY_API_PREFIX, msg.data, msg.headers,
                authenticator=self._auth, verbs=subjects.POLICY_VERBS,
            )  # fmt: skip
            return await self._processor.execute(envelope)
        envelope = parse_command(
            subject, subjects.API_PREFIX, msg.data, msg.headers,
            authenticator=self._auth, bytes_max=limits.COMMAND_BYTES_MAX, verbs=_INTENT_VERBS,
        )  # fmt: skip
        reply = await self._processor.execute(envelope)
        structlog.contextvars.bind_contextvars(
            intent_id=getattr(reply, "intent_id", None),
            correlation_id=envelope.correlation_id,
            causation_id=envelope.causation_id,
        )
        return reply

    def _agent_keys(self, msg: Message) -> Any:
        """``agents.list.<role>.<id>``: operators and auditors see every key, anyone else the
        keys they sponsor or sign with; the bare subject is the engine's own."""
        _query(msg, ListAgentKeys)
        rest = msg.subject[len(subjects.AGENTS_LIST) :]
        reader = query_reader("list", tuple(rest[1:].split(".")) if rest else (), self._auth)
        if reader is None or reader.role in ("operator", "auditor", "engine"):
            return self._processor.agent_keys.view()
        return self._processor.agent_keys.view(reader_id=reader.id)

    def _encode_reply(self, reply: Any) -> bytes:
        data = codec.encode(reply)
        if len(data) <= self._bus.max_payload:
            return data
        # A policy document with a long deny list can outgrow the server's message limit; the
        # caller gets a coded error instead of silence and a timeout.
        log.warning("reply_too_large", reply=type(reply).__name__, bytes=len(data))
        too_large = errors.PayloadTooLarge(
            f"the reply is {len(data)} bytes, more than the server's max_payload "
            f"{self._bus.max_payload}"
        )
        return codec.encode(CommandRejected(error=too_large.detail()))
