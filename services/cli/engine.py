"""The CLI's client of the running engine: request/reply over NATS, one connection a command.

The engine is the source of truth for what is in force (ADR 0020): the policy version and its
document, the corridor table. The CLI never reads local settings or bundled files to answer
"what is in force".
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import nats
import nats.errors
from nats.aio.client import Client

from services.bus import subjects
from services.cli.errors import Refused, Unreachable
from services.endpoints import find_stack

# The engine answers after its commit; a group commit under load stays far below this.
REQUEST_TIMEOUT_S: Final = 15.0
# A local stack answers a connect in milliseconds; a few seconds means it is not there.
CONNECT_TIMEOUT_S: Final = 3.0
CONNECT_ATTEMPTS_MAX: Final = 2


class EngineClient:
    """Open with ``async with EngineClient.open(state_dir) as engine:``."""

    def __init__(self, nc: Client, nats_url: str) -> None:
        self._nc = nc
        self.nats_url = nats_url

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, state_dir: Path | None) -> AsyncIterator[EngineClient]:
        stack = find_stack(state_dir)
        nc = await connect(stack.nats_url, name="corridor-cli")
        try:
            yield cls(nc, stack.nats_url)
        finally:
            await nc.close()

    @property
    def nc(self) -> Client:
        return self._nc

    async def request(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        """The engine's reply, ``ok`` true or false; raises ``Unreachable`` if nobody answers."""
        try:
            msg = await self._nc.request(
                subject, json.dumps(body).encode(), timeout=REQUEST_TIMEOUT_S
            )
        except nats.errors.NoRespondersError:
            raise Unreachable(
                f"no engine answers {subject} on {self.nats_url} (is `corridor up` running?)"
            ) from None
        except nats.errors.TimeoutError:
            raise Unreachable(
                f"the engine did not answer {subject} within {REQUEST_TIMEOUT_S:g} s"
            ) from None
        reply = json.loads(msg.data)
        if not isinstance(reply, dict):
            raise Unreachable(f"the engine answered {subject} with something not an object")
        return reply

    async def query(self, subject: str, body: dict[str, Any], *, what: str) -> dict[str, Any]:
        """Like ``request``, but a refusal is an error: the command cannot go on without it."""
        reply = await self.request(subject, body)
        if not reply.get("ok"):
            raise Refused(f"the engine would not show {what}: {describe_error(reply)}")
        return reply

    async def policy_view(self) -> dict[str, Any]:
        """``PolicyView``: ``policy_version``, ``document``, ``pending`` proposals."""
        return await self.query(
            subjects.POLICY_SHOW, {"type": "GetPolicy", "version": 1}, what="the policy in force"
        )

    async def corridors_view(self) -> dict[str, Any]:
        """``CorridorsView``: ``corridors``, each with ranked ``candidates``."""
        return await self.query(
            subjects.POLICY_CORRIDORS,
            {"type": "ListCorridors", "version": 1},
            what="the corridors in force",
        )


async def connect(nats_url: str, *, name: str) -> Client:
    """A connection for one command: give up quickly instead of reconnecting forever."""

    async def quiet(_: Exception) -> None:
        # nats-py's default callback prints a traceback per failed attempt; the CLI reports
        # the outcome once, as one line.
        return None

    servers = [u.strip() for u in nats_url.split(",") if u.strip()]
    try:
        return await nats.connect(
            servers=servers, name=name, error_cb=quiet, allow_reconnect=False,
            connect_timeout=CONNECT_TIMEOUT_S, max_reconnect_attempts=CONNECT_ATTEMPTS_MAX,
            reconnect_time_wait=0.1,
        )  # fmt: skip
    except (nats.errors.NoServersError, OSError, TimeoutError) as exc:
        raise Unreachable(f"cannot reach NATS at {nats_url} ({type(exc).__name__})") from None


def describe_error(reply: dict[str, Any]) -> str:
    """``code: message (field x)`` from a ``CommandRejected`` reply."""
    error = reply.get("error") or {}
    text = f"{error.get('code', 'error')}: {error.get('message', '')}".rstrip(": ")
    if error.get("field"):
        text += f" (field {error['field']})"
    return text


def fee_cap_msat(view: dict[str, Any], amount_msat: int) -> int:
    """The largest ``max_fee_msat`` the policy in ``view`` allows for ``amount_msat``."""
    import msgspec

    from schemas.policy_document import PolicyDocument

    try:
        document = msgspec.convert(view["document"], PolicyDocument)
    except (KeyError, msgspec.ValidationError) as exc:
        raise Refused(
            f"the engine's policy document does not read as a PolicyDocument: {exc}"
        ) from None
    return document.fees.allowed_msat(amount_msat)
