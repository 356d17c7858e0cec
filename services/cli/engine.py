"""The CLI's client of the running engine: request/reply over NATS, one connection a command.

The engine is the source of truth for what is in force (ADR 0020): the policy version and its
document, the corridor table. The CLI never reads local settings or bundled files to answer
"what is in force".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Final, TypeVar

import nats
import nats.errors
from nats.aio.client import Client

from services.bus import subjects
from services.cli.credentials import ResolvedCredential, resolve
from services.cli.errors import Refused, Unreachable, UsageError
from services.endpoints import find_stack

T = TypeVar("T")

# The engine answers after its commit; a group commit under load stays far below this.
REQUEST_TIMEOUT_S: Final = 15.0
# A local stack answers a connect in milliseconds; a few seconds means it is not there.
CONNECT_TIMEOUT_S: Final = 3.0
CONNECT_ATTEMPTS_MAX: Final = 2


class EngineClient:
    """Open with ``async with EngineClient.open(state_dir) as engine:``.

    ``credential`` is the one the command connected with; its ``token`` names the subjects
    the command may publish on (services/cli/credentials.py).
    """

    def __init__(
        self,
        nc: Client,
        nats_url: str,
        credential: ResolvedCredential | None = None,
        denials: Denials | None = None,
    ) -> None:
        self._nc = nc
        self.nats_url = nats_url
        self.credential = credential or ResolvedCredential(path=None)
        self._denials = denials or Denials()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, state_dir: Path | None) -> AsyncIterator[EngineClient]:
        stack = find_stack(state_dir)
        credential = resolve(state_dir)
        denials = Denials()
        nc = await connect(
            stack.nats_url, name="corridor-cli", creds=credential.path, on_error=denials.record
        )
        try:
            yield cls(nc, stack.nats_url, credential, denials)
        finally:
            await nc.close()

    @property
    def nc(self) -> Client:
        return self._nc

    async def request(
        self,
        subject: str,
        body: dict[str, Any],
        *,
        sign: Callable[[bytes], dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        """The engine's reply, ``ok`` true or false; raises ``Unreachable`` if nobody answers
        and ``UsageError`` at once if the server does not let this credential ask. ``sign``
        gives the headers that sign the encoded body (an agent's, ADR 0066)."""
        self._denials.clear()
        data = json.dumps(body).encode()
        headers = sign(data) if sign is not None else None
        try:
            msg = await self._denials.race(
                self._nc.request(subject, data, timeout=REQUEST_TIMEOUT_S, headers=headers),
                refusal=lambda detail: UsageError(
                    f"NATS does not let the credential {self.credential.path} publish on "
                    f"{subject} ({detail}); `corridor creds list` shows what each one is"
                ),
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


class Denials:
    """The server's permission refusals on one connection: a refused publish is dropped
    silently (it only reaches the error callback), so a request would wait out its timeout."""

    def __init__(self) -> None:
        self._refused = asyncio.Event()
        self.detail = ""

    async def record(self, exc: Exception) -> None:
        if "permissions violation" in str(exc).lower():
            self.detail = str(exc).removeprefix("nats: ")
            self._refused.set()

    def clear(self) -> None:
        self._refused.clear()

    async def race(self, work: Coroutine[Any, Any, T], *, refusal: Callable[[str], Exception]) -> T:
        """``work``'s result, unless the server refuses first: then ``refusal(detail)``."""
        task = asyncio.ensure_future(work)
        refused = asyncio.ensure_future(self._refused.wait())
        try:
            await asyncio.wait({task, refused}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            refused.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise refusal(self.detail)
        return task.result()


async def connect(
    nats_url: str,
    *,
    name: str,
    creds: Path | None = None,
    on_error: Callable[[Exception], Awaitable[None]] | None = None,
) -> Client:
    """A connection for one command, as the nkey user in ``creds`` (if none, the server
    refuses it and the user is told how to name one): give up quickly instead of
    reconnecting forever."""
    from services.bus.jetstream import credential_options
    from services.identity.nats_auth import CredentialFileError

    async def quiet(exc: Exception) -> None:
        # nats-py's default callback prints a traceback per failed attempt; the CLI reports
        # the outcome once, as one line.
        if on_error is not None:
            await on_error(exc)

    servers = [u.strip() for u in nats_url.split(",") if u.strip()]
    try:
        options = credential_options(creds)
    except CredentialFileError as exc:
        raise UsageError(str(exc)) from None
    try:
        return await nats.connect(
            servers=servers, name=name, error_cb=quiet, allow_reconnect=False,
            connect_timeout=CONNECT_TIMEOUT_S, max_reconnect_attempts=CONNECT_ATTEMPTS_MAX,
            reconnect_time_wait=0.1, **options,
        )  # fmt: skip
    except (nats.errors.NoServersError, OSError, TimeoutError) as exc:
        raise Unreachable(f"cannot reach NATS at {nats_url} ({type(exc).__name__})") from None
    except nats.errors.Error as exc:
        if "authorization violation" not in str(exc).lower():
            raise
        raise Unreachable(_refused(nats_url, options.get("nkeys_seed"))) from None


def _refused(nats_url: str, seed: str | None) -> str:
    if seed is None:
        return (
            f"NATS at {nats_url} refused a connection without a credential: pass --creds FILE, "
            "set CORRIDOR_CREDS, or use the state dir `corridor up` made its credentials in"
        )
    return (
        f"NATS at {nats_url} refused the credential {seed} (revoked, or not one of this "
        "stack's: `corridor creds list`)"
    )


def describe_error(reply: dict[str, Any]) -> str:
    """``code: message (field x)`` from a ``CommandRejected`` reply."""
    error = reply.get("error") or {}
    text = f"{error.get('code', 'error')}: {error.get('message', '')}".rstrip(": ")
    if error.get("field"):
        text += f" (field {error['field']})"
    if error.get("limit") is not None:
        text += f" (limit {error['limit']})"
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
