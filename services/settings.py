"""One typed settings object: defaults for local use, then a TOML file, then env vars.

Precedence (highest first): ``CORRIDOR_*`` env vars (and plain ``NATS_URL``/``DATABASE_URL``),
the TOML file named by ``CORRIDOR_CONFIG`` (default ``corridor.toml`` if present), defaults.

Every field carries a one-line ``description`` and, where the name's suffix does not already
say it, a ``unit``: ``docs/configuration.md`` and ``corridor.example.toml`` are generated from
them (``python -m services.settings_reference``), and a test fails while either is stale.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic.config import JsonDict
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

Network = Literal["mainnet", "testnet", "signet", "regtest"]

DEFAULT_CORRIDORS: dict[str, list[str]] = {
    # corridor -> ordered candidate "region/node" (first preferred).
    "us-eu": ["us/us-lnd", "eu/eu-lnd", "us/us-cln"],
    "eu-asia": ["eu/eu-lnd", "asia/asia-lnd", "eu/eu-cln"],
    "us-asia": ["us/us-lnd", "asia/asia-lnd", "asia/asia-cln"],
}


def _unit(unit: str) -> JsonDict:
    """``json_schema_extra`` naming the unit of a setting whose name has no unit suffix."""
    return {"unit": unit}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CORRIDOR_", extra="ignore")

    # -- where the stack is ---------------------------------------------------------------
    nats_url: str = Field(
        default="",
        validation_alias=AliasChoices("NATS_URL", "CORRIDOR_NATS_URL"),
        description="NATS URL of a running stack (nats://host:4222, comma-separated for a "
        "cluster). Commands read the plain NATS_URL variable, else STATE_DIR/endpoints.json; "
        "the TOML key and CORRIDOR_NATS_URL are not read yet.",
    )
    database_url: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices("DATABASE_URL", "CORRIDOR_DATABASE_URL"),
        description="PostgreSQL DSN of a running stack (postgresql://user:password@host:5432/db"
        "). Commands read the plain DATABASE_URL variable, else STATE_DIR/endpoints.json; the "
        "TOML key and CORRIDOR_DATABASE_URL are not read yet.",
    )
    state_dir: Path = Field(
        default=Path(".corridor"),
        description="Directory of endpoints.json and the executors' keysend secret, for "
        "`corridor executor` without --state-dir.",
    )
    network: Network = Field(
        default="regtest",
        description="Bitcoin network Corridor pays on: an invoice for any other network is "
        "refused at intake (wrong_network).",
    )
    log_level: str = Field(
        default="info",
        description="Level of the JSON log lines (debug, info, warning, error).",
    )

    # -- engine: intake and the writer loop -----------------------------------------------
    intake_batch_max: int = Field(
        default=256,
        ge=1,
        le=4096,
        json_schema_extra=_unit("commands"),
        description="Group commit: a batch closes at this many commands or when the queue is "
        "empty.",
    )
    intake_queue_max: int = Field(
        default=4096,
        ge=1,
        json_schema_extra=_unit("commands"),
        description="Commands waiting for the writer loop; when full, intake waits (backpressure).",
    )
    # An entry is about 1 KiB with its invoice, so 20,000 bound the cache near 20 MiB.
    state_cache_max: int = Field(
        default=20_000,
        ge=100,
        json_schema_extra=_unit("intents"),
        description="Intent states the writer loop keeps in memory (about 1 KiB each); a miss "
        "costs one query per batch.",
    )
    db_pool_max: int = Field(
        default=10,
        ge=2,
        le=100,
        json_schema_extra=_unit("connections"),
        description="PostgreSQL connections in the engine's pool.",
    )
    command_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Reserved for the time a client waits for a command's reply; no code "
        "reads it yet.",
    )

    # -- engine: outbox relay -------------------------------------------------------------
    relay_batch_max: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        json_schema_extra=_unit("events"),
        description="Events the relay reads from the log at once.",
    )
    relay_inflight_max: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        json_schema_extra=_unit("publishes"),
        description="JetStream publishes awaiting an ack at once.",
    )
    relay_poll_s: float = Field(
        default=1.0,
        gt=0,
        description="How often an idle relay re-reads the log, and a standby relay tries for "
        "the leader's lock.",
    )
    bus_stream_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        json_schema_extra=_unit("servers"),
        description="Copies JetStream keeps of each Corridor stream: 1 on a single nats-server, "
        "3 on a cluster (a stream then survives one server's loss). Start-up moves an existing "
        "stream to this count; a server that cannot hold that many copies stops the engine.",
    )
    jetstream_duplicate_window_s: int = Field(
        default=120,
        ge=1,
        description="JetStream duplicate window: events older than this may be re-published "
        "after a relay outage, so consumers dedupe by event id or position.",
    )

    # -- retention (ADR 0079): what each stream and table keeps -----------------------------
    # Start-up applies these to a new stream; on an existing one it keeps any limit an
    # operator changed on the server, and logs it (services/bus/stream_limits.py).
    cmd_stream_max_msgs: int = Field(
        default=1_000_000,
        ge=1,
        json_schema_extra=_unit("commands"),
        description="CORRIDOR_CMD (a work queue: a command leaves once handled) holds at most "
        "this many unhandled commands; a full stream refuses new ones, never drops one.",
    )
    cmd_stream_max_bytes: int = Field(
        default=1 << 30,
        ge=1 << 20,
        description="CORRIDOR_CMD size limit; a full stream refuses new commands (the caller "
        "sees the publish fail and retries), so an engine outage cannot fill the disk.",
    )
    evt_stream_max_age_s: int = Field(
        default=7 * 86_400,
        ge=3_600,
        description="CORRIDOR_EVT keeps events this long (oldest dropped first): it is a copy "
        "of the log for watchers; a reader offline longer catches up with `corridor replay`.",
    )
    evt_stream_max_bytes: int = Field(
        default=10 << 30,
        ge=1 << 20,
        description="CORRIDOR_EVT size limit (oldest dropped first): the log in PostgreSQL "
        "keeps every event.",
    )
    dispatch_stream_max_age_s: int = Field(
        default=7 * 86_400,
        ge=3_600,
        description="CORRIDOR_DISPATCH keeps work orders this long: far past any pay timeout; "
        "a node whose executor is away longer has its orders re-issued from the log.",
    )
    dispatch_stream_max_bytes: int = Field(
        default=1 << 30,
        ge=1 << 20,
        description="CORRIDOR_DISPATCH size limit; a full stream refuses new orders (the relay "
        "retries) rather than drop one an executor has not taken.",
    )
    dlq_stream_max_age_s: int = Field(
        default=30 * 86_400,
        ge=86_400,
        description="CORRIDOR_DLQ keeps a dead letter this long for `corridor dlq list|replay|"
        "drop`; a month covers a holiday.",
    )
    dlq_stream_max_msgs: int = Field(
        default=100_000,
        ge=1,
        json_schema_extra=_unit("messages"),
        description="CORRIDOR_DLQ holds at most this many dead letters; when full, new ones are "
        "refused and their commands stay in CORRIDOR_CMD, redelivered, until it has room.",
    )
    checkpoint_stream_max_bytes: int = Field(
        default=1 << 30,
        ge=1 << 20,
        description="CORRIDOR_CHECKPOINTS size limit (no age limit, deletes denied): about 3.5 "
        "million signed heads; when full, new ones wait in the log's table.",
    )
    policy_rejections_per_minute_max: int = Field(
        default=60,
        ge=1,
        json_schema_extra=_unit("rejected submits per caller"),
        description="Policy-rejected submits (3 events each) a caller may make a minute, with a "
        "burst of as many; past it a new submit is refused as rate_limited, writing nothing.",
    )
    idempotency_retention_s: int = Field(
        default=30 * 86_400,
        ge=86_400,
        description="Idempotency claims older than this are pruned. A submit repeated later "
        "still finds its intent (the intent id is derived from caller and key, ADR 0002).",
    )

    # -- engine: self-healing (ADR 0075) --------------------------------------------------
    sweep_interval_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How often the sweeper looks for work orders to re-issue and intents that "
        "outlived intent_life_s.",
    )
    reissue_after_s: int = Field(
        default=900,
        ge=1,
        le=7 * 24 * 3600,
        description="An intent on the wire (or succeeded without proof) with no event for this "
        "long has no live attempt: its work order is re-issued from the log. Above an "
        "executor's tracking time (600 s) plus a redelivery delay, so a live attempt is left be.",
    )
    intent_life_s: int = Field(
        default=3600,
        ge=1,
        le=30 * 24 * 3600,
        description="An attempt dispatched longer ago than this, without the node's evidence, "
        "becomes an exception item (IntentEscalated); its spend stays reserved until the node's "
        "proof or an operator's corridor intents resolve.",
    )

    # -- routing and payments -------------------------------------------------------------
    keysend_unsupported_nodes: list[str] = Field(
        default_factory=lambda: ["us-cln", "eu-cln", "asia-cln"],
        json_schema_extra=_unit("node names"),
        description="Nodes that cannot keysend with a preimage Corridor chooses (every Core "
        "Lightning node): routing sends them invoice payments only.",
    )
    credentials_file: Path | None = Field(
        default=None,
        examples=["/etc/corridor/credentials.json"],
        description="The credential registry (`corridor creds` writes it) the engine checks "
        "every caller against: kind, expiry, revocation (ADR 0061). Required when the NATS "
        "server is given (NATS_URL); unset, `corridor up` uses the one its own server serves.",
    )
    policy_file: Path | None = Field(
        default=None,
        examples=["/etc/corridor/policy.yaml"],
        description="Policy document (YAML or JSON) in force until a two-person-approved "
        "version replaces it; unset: services/policy/default.yaml.",
    )
    health_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="Health report interval the engine expects (three missed make a node "
        "unhealthy); must match the executors', a fixed 5 s.",
    )
    attempts_max: int = Field(
        default=3,
        ge=1,
        le=16,
        json_schema_extra=_unit("attempts"),
        description="Attempts per intent (the first send plus re-routes) before it fails with "
        "retry_budget_exhausted.",
    )
    pay_timeout_s: int = Field(
        default=60,
        ge=1,
        le=3600,
        description="Time a node gets to settle one attempt, sent with each work order.",
    )
    corridors: dict[str, list[str]] = Field(
        default_factory=lambda: dict(DEFAULT_CORRIDORS),
        json_schema_extra=_unit("region/node pairs"),
        description="Corridor name -> ordered candidate region/node pairs, first preferred; "
        "a bare region means <region>-lnd.",
    )

    # -- reconciliation against the nodes' records (ADR 0151) ------------------------------
    reconciliation_breaker_regions: list[str] = Field(
        default_factory=lambda: ["us", "eu", "asia"],
        json_schema_extra=_unit("regions"),
        description="Regions whose nodes stop new sends when reconciliation finds a payment "
        "we never dispatched, until an operator runs corridor recon clear; other regions only "
        "record the item.",
    )
    reconciliation_in_flight_bound_s: int = Field(
        default=3600,
        ge=1,
        le=30 * 24 * 3600,
        description="An attempt still in flight on our side this long after dispatch becomes a "
        "stuck_in_flight reconciliation item.",
    )
    reconciliation_lookback_s: int = Field(
        default=7 * 24 * 3600,
        ge=3600,
        le=90 * 24 * 3600,
        description="How far back each pass reads our attempts from the log; node payments "
        "older than this are never judged as ones we did not dispatch.",
    )
    reconciliation_page_max: int = Field(
        default=200,
        ge=1,
        le=1000,
        json_schema_extra=_unit("payments"),
        description="Node payments asked for per page (LND max_payments, CLN limit).",
    )
    reconciliation_pages_max: int = Field(
        default=50,
        ge=1,
        le=10_000,
        json_schema_extra=_unit("pages"),
        description="Pages one pass reads from the node's list; the rest waits for the next "
        "pass, which resumes at the stored cursor.",
    )
    reconciliation_interval_s: float = Field(
        default=60.0,
        ge=1.0,
        le=24 * 3600.0,
        description="Seconds between the passes each node's reconciler makes under corridor "
        "up (one pass lists the node's new payments and looks up our changed attempts).",
    )

    # -- channel operations (ADR 0236) --------------------------------------------------------
    channel_open_auto_max_msat: int = Field(
        default=(2**24 - 1) * 1000,
        ge=0,
        le=21_000_000 * 100_000_000 * 1000,
        description="Channel opens up to this amount run at once; larger ones wait in tier "
        "approval until an operator other than the requester approves them (corridor approve "
        "chop-...). Default: lnd's largest channel without wumbo.",
    )
    channel_open_max_msat: int = Field(
        default=10 * 100_000_000 * 1000,
        ge=1000,
        le=21_000_000 * 100_000_000 * 1000,
        description="No channel open above this is accepted, approved or not: what our nodes "
        "can open (lnd's and Core Lightning's wumbo maximum is 10 BTC by default).",
    )
    channel_fee_budget_msat_per_day: int = Field(
        json_schema_extra=_unit("msat per UTC day"),
        default=100_000 * 1000,  # CHANNEL_FEE_BUDGET_MSAT_PER_DAY (services/domain/channel_ops)
        ge=0,
        description="The most a region's day of fees may reach with a channel open or close "
        "(ADR 0285): its on-chain fee is held on the same day budget stream as rebalance fees, "
        "so it also counts against liquidity_fee_budget_msat_per_day.",
    )

    # -- liquidity targets and forecast (ADR 0241) -------------------------------------------
    liquidity_local_ratio_min_ppm: int = Field(
        json_schema_extra=_unit("ppm"),
        default=100_000,
        ge=0,
        le=1_000_000,
        description="A region whose outbound is below this share of its active channels' "
        "balances (outbound / (outbound + inbound), parts per million) raises a "
        "local_ratio_low alert.",
    )
    liquidity_local_ratio_max_ppm: int = Field(
        json_schema_extra=_unit("ppm"),
        default=1_000_000,
        ge=0,
        le=1_000_000,
        description="A region whose outbound share is above this raises local_ratio_high "
        "(its inbound, for receiving, is running out); 1000000 turns it off.",
    )
    liquidity_inbound_min_msat: int = Field(
        default=0,
        ge=0,
        description="A region with less inbound than this raises inbound_low.",
    )
    liquidity_targets: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        json_schema_extra=_unit("targets"),
        description="Targets of their own: key a region (us) or a region and a peer pubkey "
        "(us/02ab...), value any of local_ratio_min_ppm, local_ratio_max_ppm, "
        "inbound_min_msat; what a key leaves out comes from the three settings above.",
    )
    liquidity_dry_within_hours: int = Field(
        json_schema_extra=_unit("hours"),
        default=24,
        ge=0,
        le=24 * 365,
        description="Alert (runs_dry_soon) when a region's outbound lasts fewer hours than "
        "this at its recent outflow; 0 turns the forecast alert off.",
    )
    liquidity_outflow_window_s: int = Field(
        default=3600,
        ge=60,
        le=7 * 24 * 3600,
        description="The recent window whose settled payments give a region's outflow rate.",
    )

    liquidity_fee_budget_msat_per_day: int = Field(
        json_schema_extra=_unit("msat per UTC day"),
        default=100_000,
        ge=0,
        description="Rebalance fees each source region may spend per UTC day (ADR 0243): the "
        "planner counts settled fees and open moves' whole max_fee_msat against it.",
    )
    liquidity_fee_ppm_estimate: int = Field(
        json_schema_extra=_unit("ppm"),
        default=1_000,
        ge=0,
        le=1_000_000,
        description="The route fee the planner expects, per million moved (plus the base "
        "below); a move's max_fee_msat is twice the estimate, within the budget left.",
    )
    liquidity_fee_base_estimate_msat: int = Field(
        default=2_000,
        ge=0,
        description="The fixed part of the expected fee of one move.",
    )
    liquidity_move_min_msat: int = Field(
        default=1_000_000,
        ge=1,
        description="Smaller moves are not proposed: their fee is out of proportion.",
    )
    liquidity_move_max_msat: int = Field(
        default=10_000_000,
        ge=1,
        description="Largest single move (keep it within the planner caller's auto tier).",
    )
    liquidity_rebalance_auto_max_msat: int = Field(
        default=10_000_000,
        ge=0,
        description="The engine's rebalance tier (ADR 0244): moves up to this are auto; larger "
        "ones wait for an approval and are not dispatched. The fee budget per day above is "
        "enforced by the engine too, from the log (ADR 0245).",
    )
    liquidity_planner_round_s: int = Field(
        default=60,
        ge=1,
        le=86_400,
        description="One planning round per this many seconds (corridor liquidity plan "
        "--every); a round's moves share one idempotency key each.",
    )

    # -- metrics and probes (ADR 0153) -----------------------------------------------------
    metrics_host: str = Field(
        default="127.0.0.1",
        max_length=255,
        description="Where /metrics, /healthz and /readyz listen (loopback by default: put a "
        "scraper beside the process, or set 0.0.0.0 behind a network policy).",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65_535,
        json_schema_extra=_unit("TCP port"),
        description="Their port; 0 picks a free one, written to endpoints.json as metrics_url.",
    )
    metrics_sample_s: float = Field(
        default=30.0,
        gt=0,
        le=300,
        description="How often the sampled series (intents by state, lags, exceptions, "
        "breakers, consumers) are read from PostgreSQL and JetStream: each sample counts the "
        "intents projection, so more often costs the database more.",
    )
    metrics_stuck_after_s: int = Field(
        default=120,
        ge=1,
        description="A payment on the wire longer than this counts as in_doubt in "
        "corridor_exceptions_open, as corridor exceptions counts it by default.",
    )
    tracing_exporter: Literal["none", "console"] = Field(
        default="none",
        description="Where spans go (ADR 0154): none (trace context is still passed on), or "
        "console (JSON on stderr). Spans are made only for commands that arrive with a W3C "
        "traceparent header.",
    )

    # -- webhooks (ADR 0175-0179) ------------------------------------------------------------
    webhooks_allow_loopback: bool = Field(
        default=False,
        description="Let webhook URLs name a loopback host (localhost, 127.0.0.1, ::1). Off by "
        "default: on a server it lets any caller reach services on its loopback; corridor up "
        "turns it on unless set, since everything there runs on this machine (ADR 0177).",
    )
    webhooks_retry_period_s: float = Field(
        default=24 * 3600,
        gt=0,
        le=7 * 24 * 3600,
        description="How long one message is retried before its failure is recorded (a "
        "WebhookDeliveryFailed event) and the receiver is left to catch up from the history.",
    )
    webhooks_backoff_first_s: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="The first retry's delay; each next one doubles, with full jitter.",
    )
    webhooks_backoff_max_s: float = Field(
        default=3600.0,
        gt=0,
        le=24 * 3600,
        description="The longest delay between two tries of one message.",
    )
    webhooks_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=60,
        description="One delivery's HTTP timeout (connect, send and the receiver's answer).",
    )
    webhooks_poll_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often the dispatcher reads new endpoint registrations and removals "
        "from the log.",
    )
    # JIT channels: our node as the LSPS2 server (issue 19, ADR 0261/0262).
    jit_lsp_nodes: list[str] = Field(
        default_factory=list,
        description="Our nodes that sell JIT channels (LSPS2): their executors intercept "
        "HTLCs for sold SCIDs (lnd needs requireinterceptor, zero-conf and scid-alias on).",
    )
    jit_fee_max_msat: int = Field(
        default=50_000_000,
        ge=0,
        description="Policy cap on one JIT channel's opening fee, whatever the menu says: a "
        "sale or an HTLC whose fee is above it is refused (ADR 0262).",
    )
    jit_fee_max_ppm: int = Field(
        json_schema_extra=_unit("ppm"),
        default=50_000,
        ge=0,
        le=1_000_000,
        description="Policy cap on the opening fee as a share of the payment (5 %: a fee "
        "that eats a contractor's first payment is refused).",
    )
    jit_fee_menu: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        json_schema_extra=_unit("opening_fee_params"),
        description="The lsps2.get_info menu (bLIP-52), entries in name order, each with "
        "min_fee_msat, proportional (ppm), valid_for_s, min_lifetime, "
        "max_client_to_self_delay, min_payment_size_msat, max_payment_size_msat; empty: "
        "one entry of 546 sat minimum and 1200 ppm for 1k-10M sat, valid an hour.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("CORRIDOR_CONFIG", "corridor.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.exists():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
