"""Who sent a message: the subject's identity token, checked against the credential registry.

NATS does not tell a subscriber who published. Each credential may publish only on subjects
that end in its own id (ADR 0060), so that last token is the authenticated identity. The
payload's own identity field must agree with it (``identity_mismatch``), and what a token
cannot carry comes from the registry, never from the payload: a caller's kind, an executor's
region (ADR 0061).

Without a registry (unit tests, setups from before credentials) the token rules still hold,
but nothing is verified: a caller's kind is the payload's and an executor's region the corridor
table's. That is today's trust, and it is logged when the engine starts.

An agent's commands carry its signature too (ADR 0066), checked against the agent keys the
log trusts (ADR 0068): with a credential registry and no agent keys, every agent command is
refused. Without a credential registry nobody is an agent.

Agent keys are changed by operators and by human principals (a caller credential of kind
``human``): ``agents.propose|revoke.<id>`` from either, ``agents.approve.<id>`` from operators
only (ADR 0068). An id that is both is taken as the operator.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from schemas import channel_messages as cm
from schemas import commands as cmd
from schemas import errors
from schemas import jit_messages as jm
from schemas import lsp_messages as lm
from schemas import payee_messages as pm
from schemas.agent_key_messages import (
    AgentKeyCommand,
    ApproveAgentKey,
    ProposeAgentKey,
    RevokeAgentKey,
)
from schemas.common import Caller
from schemas.policy_messages import PolicyCommand
from schemas.rebalance_messages import ApproveRebalance, RequestRebalance
from schemas.receive_messages import CreateReceiveIntent, ReceiveCommand, RecordInvoiceState
from schemas.reconciliation_messages import ReconciliationCommand, ReportReconciliation
from schemas.webhook_messages import (
    CallerWebhookCommand,
    RegisterWebhookEndpoint,
    RemoveWebhookEndpoint,
)
from services.domain.principal import Principal, claimed_identity
from services.domain.routing import CorridorTable
from services.identity.agent_keys import AgentKey, AgentKeyLookup, AgentKeys, IndexedAgentKeys
from services.identity.agent_signatures import verify_agent_command
from services.identity.lookup import CredentialLookup
from services.identity.registry import ID_PATTERN, ROLES, Credential, Role

log = structlog.get_logger("corridor.identity")


class Authenticator:
    def __init__(
        self,
        credentials: CredentialLookup | None,
        corridors: CorridorTable | None = None,
        *,
        agent_keys: AgentKeyLookup | None = None,
    ) -> None:
        self._credentials = credentials
        self._agent_keys = agent_keys or IndexedAgentKeys(AgentKeys())
        # Without a registry, an executor's region is where the corridor table puts its node.
        self._regions: dict[str, frozenset[str]] = {}
        for candidates in corridors.corridors.values() if corridors else ():
            for c in candidates:
                self._regions[c.node] = self._regions.get(c.node, frozenset()) | {c.region}
        if credentials is None:
            log.warning(
                "identity_unverified",
                detail="no credential registry: a caller's kind is taken from the payload",
            )

    @property
    def verified(self) -> bool:
        return self._credentials is not None

    def command(
        self,
        token: str,
        command: cmd.Command
        | PolicyCommand
        | AgentKeyCommand
        | ReconciliationCommand
        | CallerWebhookCommand
        | ReceiveCommand
        | cm.ChannelOpCommand
        | RequestRebalance
        | ApproveRebalance
        | jm.JitCommand
        | pm.PayeeCommand
        | lm.LspOrderCommand,
    ) -> Principal:
        """The principal the subject's ``token`` names, once the payload agrees with it."""
        if isinstance(command, cm.CHANNEL_OP_COMMAND_TYPES):
            return self._channel_op(token, command)
        if isinstance(command, jm.JIT_COMMAND_TYPES):
            # The LSP node's executor (ADR 0261); the planner checks the sale is its node's.
            self._require("executor", token)
            if isinstance(command, jm.SellJitChannel):
                self._check_region(command.node, command.region)
            return Principal(role="executor", id=token)
        if isinstance(command, pm.PAYEE_COMMAND_TYPES):  # ADR 0270: operators, by credential
            self._require("operator", token)
            return Principal(role="operator", id=token)
        if isinstance(command, lm.LSP_ORDER_COMMAND_TYPES):
            return self._lsp_order(token, command)
        claimed = claimed_identity(command)
        assert claimed is not None, "the engine's own commands have no subject verb"
        field, value = claimed
        _same(field, value, token)
        match command:
            case (
                cmd.SubmitPaymentIntent()
                | cmd.CancelPaymentIntent()
                | CreateReceiveIntent()
                | RequestRebalance()
            ):
                return self._caller(token, command.caller)
            case cmd.RecordPaymentOutcome() | RecordInvoiceState():
                self._check_region(token, command.region)
                return Principal(role="executor", id=token)
            case ReportReconciliation():
                self._check_region(token, command.region, role="reconciler")
                return Principal(role="reconciler", id=token)
            case RegisterWebhookEndpoint() | RemoveWebhookEndpoint():
                return self.owner(token)
            case ApproveAgentKey():
                self._require("operator", token)
                return Principal(role="operator", id=token)
            case ProposeAgentKey() | RevokeAgentKey():
                return self._key_changer(token)
            case _:
                # Intent approvals and rejections, policy proposals and approvals.
                self._require("operator", token)
                return Principal(role="operator", id=token)

    def check_signature(
        self,
        principal: Principal,
        command: cmd.Command
        | PolicyCommand
        | AgentKeyCommand
        | ReconciliationCommand
        | CallerWebhookCommand
        | ReceiveCommand
        | RequestRebalance
        | ApproveRebalance,
        data: bytes,
        headers: Mapping[str, str] | None,
    ) -> AgentKey | None:
        """The live key of the agent that signed its command, within the key's per-command
        limit (ADR 0066); ``None`` for anyone else's, which passes untouched."""
        if principal.role != "agent":
            return None
        amount = command.amount_msat if isinstance(command, cmd.SubmitPaymentIntent) else None
        return verify_agent_command(
            principal.id, data, headers, self._agent_keys, amount_msat=amount
        )

    def reader(self, role: str, ident: str, *, history: bool) -> Principal:
        """The principal of ``<query>.<role>.<id>``; which intents it reads is the domain's
        rule (``services.domain.intent.access``)."""
        if role not in ROLES or not ID_PATTERN.match(ident):
            raise errors.CorridorError(
                f"the identity tokens must be <role>.<id> with role in {list(ROLES)}",
                field="subject",
                code="bad_subject",
            )
        if role == "executor" and history:
            raise errors.Forbidden(
                "an executor may ask an intent's status, not its history", field="subject"
            )
        principal = Principal(role=role, id=ident)
        self._require(principal.role, ident)
        return principal

    def owner(self, token: str) -> Principal:
        """A caller or agent acting on what it owns (its webhook endpoints, ADR 0175)."""
        if self._credentials is None:
            return Principal(role="caller", id=token)
        credential = self._credentials.find("agent", token) or self._credentials.find(
            "caller", token
        )
        if credential is None:
            raise errors.Forbidden(f"no caller or agent credential {token!r}", field="subject")
        return Principal(role=credential.role, id=token)

    def _caller(self, token: str, caller: Caller) -> Principal:
        if self._credentials is None:
            return Principal(role="caller", id=token)
        # An id that is both an agent and a caller is judged as the agent: the stricter tier.
        credential = self._credentials.find("agent", token) or self._credentials.find(
            "caller", token
        )
        if credential is None:
            raise errors.Forbidden(f"no caller or agent credential {token!r}", field="subject")
        assert credential.kind is not None, "Credential.check: callers and agents have a kind"
        _same("caller.kind", caller.kind, credential.kind)
        return Principal(role=credential.role, id=token)

    def _key_changer(self, token: str) -> Principal:
        """An operator, or a human principal; nobody else proposes or revokes agent keys."""
        if self._credentials is None or self._credentials.find("operator", token) is not None:
            return Principal(role="operator", id=token)
        caller = self._credentials.find("caller", token)
        if caller is None or caller.kind != "human":
            raise errors.Forbidden(
                f"{token!r} is neither an operator nor a human caller: only they propose or "
                "revoke agent keys",
                field="subject",
            )
        return Principal(role="caller", id=token)

    def _check_region(self, node: str, claimed: str, *, role: Role = "executor") -> None:
        if self._credentials is not None:
            credential = self._require(role, node)
            assert credential is not None and credential.region is not None
            _same("region", claimed, credential.region)
            return
        regions = self._regions.get(node)
        if regions and claimed not in regions:
            _same("region", claimed, min(regions))

    def _channel_op(self, token: str, command: cm.ChannelOpCommand) -> Principal:
        """Channel operations (ADR 0234): operators open and close on a node the registry
        knows in the region named; the node's executor reports. No payload field names the
        sender: the token is the whole identity."""
        if isinstance(command, cm.RecordChannelOpReport):
            self._require("executor", token)
            return Principal(role="executor", id=token)
        self._require("operator", token)
        self._check_region(command.node, command.region)
        return Principal(role="operator", id=token)

    def _lsp_order(self, token: str, command: lm.LspOrderCommand) -> Principal:
        """LSP orders (ADR 0252): an operator, or a caller of kind service, orders for a node
        the registry knows in the region named; the node's executor reports. No payload field
        names the sender: the token is the whole identity."""
        if isinstance(command, lm.RecordLspOrderReport):
            self._require("executor", token)
            return Principal(role="executor", id=token)
        self._check_region(command.node, command.region)
        if self._credentials is None:
            return Principal(role="caller", id=token)  # as ``_caller`` without a registry
        if self._credentials.find("operator", token) is not None:
            return Principal(role="operator", id=token)
        caller = self._credentials.find("caller", token)
        if caller is None or caller.kind != "service":
            raise errors.Forbidden(
                f"{token!r} is neither an operator nor a service caller", field="subject"
            )
        return Principal(role="caller", id=token)

    def _require(self, role: Role, ident: str) -> Credential | None:
        """The live credential of ``role`` named ``ident``; ``None`` only without a registry."""
        if self._credentials is None:
            return None
        credential = self._credentials.find(role, ident)
        if credential is None:
            raise errors.Forbidden(f"no live {role} credential {ident!r}", field="subject")
        return credential


def _same(field: str, claimed: str, authenticated: str) -> None:
    if claimed != authenticated:
        raise errors.IdentityMismatch(
            f"payload {field} {claimed!r} differs from {authenticated!r}, which the subject's "
            "credential says",
            field=field,
        )
