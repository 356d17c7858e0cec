"""``corridor lsp info`` answered by the executor (ADR 0252): only a region's executor talks to
its node, so the LSP's LSPS1 options (``lsps1.get_info``) are asked through it, on
``corridor.lsp.v1.info.<node>`` (core request/reply; operators and callers may ask)."""

from __future__ import annotations

from typing import Final

import msgspec
import structlog

from schemas import codec
from schemas.common import ErrorDetail
from schemas.lsp_messages import GetLspInfo, LspInfoView
from schemas.replies import CommandRejected
from services.bus import subjects
from services.bus.port import Bus, Message, Subscription
from services.lightning.port import NodePort
from services.lsps.client import LspsClient, LspsTimeout, LspsUnavailable
from services.lsps.lsps0 import LspsError
from services.lsps.lsps1 import Lsps1Client, LspsProtocolError

log = structlog.get_logger("corridor.executor")

# One question is a pubkey; anything larger is not one.
INFO_REQUEST_BYTES_MAX: Final = 1024
INFO_TIMEOUT_S: Final = 10.0


_decode = msgspec.json.Decoder(GetLspInfo)


async def serve_lsp_info(bus: Bus, node: NodePort, *, node_name: str) -> Subscription:
    async def answer(msg: Message) -> None:
        reply: LspInfoView | CommandRejected
        try:
            if len(msg.data) > INFO_REQUEST_BYTES_MAX:
                raise ValueError(f"request over {INFO_REQUEST_BYTES_MAX} bytes")
            request = _decode.decode(msg.data)
            async with LspsClient(node) as lsps:
                await lsps.ready(request.lsp_pubkey, timeout_s=INFO_TIMEOUT_S)
                info = await Lsps1Client(lsps, node, timeout_s=INFO_TIMEOUT_S).get_info(
                    request.lsp_pubkey
                )
            reply = LspInfoView(info=info)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            reply = _error("invalid_request", str(exc)[:200], "lsp_pubkey")
        except (LspsTimeout, LspsUnavailable, TimeoutError) as exc:
            reply = _error("lsp_unavailable", str(exc)[:200], None)
        except (LspsError, LspsProtocolError) as exc:
            reply = _error("lsp_error", str(exc)[:200], None)
        if msg.reply:
            await msg.respond(codec.encode(reply))

    return await bus.subscribe(f"{subjects.LSP_INFO_PREFIX}.{node_name}", answer)


def _error(code: str, message: str, field: str | None) -> CommandRejected:
    return CommandRejected(error=ErrorDetail(code=code, message=message, field=field))
