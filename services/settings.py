"""One typed settings object: defaults for local use, then a TOML file, then env vars.

Precedence (highest first): ``CORRIDOR_*`` env vars (and plain ``NATS_URL``/``DATABASE_URL``),
the TOML file named by ``CORRIDOR_CONFIG`` (default ``corridor.toml`` if present), defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CORRIDOR_", extra="ignore")

    nats_url: str = Field(
        default="", validation_alias=AliasChoices("NATS_URL", "CORRIDOR_NATS_URL")
    )
    database_url: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices("DATABASE_URL", "CORRIDOR_DATABASE_URL"),
    )
    state_dir: Path = Path(".corridor")
    network: Network = "regtest"
    log_level: str = "info"

    # Intake: group commit. A batch closes at this size or when the queue is empty.
    intake_batch_max: int = Field(default=256, ge=1, le=4096)
    intake_queue_max: int = Field(default=4096, ge=1)
    # Intent states kept in memory by the writer loop (a miss costs one query per batch). An
    # entry is about 1 KiB with its invoice, so 20,000 bound the cache near 20 MiB.
    state_cache_max: int = Field(default=20_000, ge=100)
    db_pool_max: int = Field(default=10, ge=2, le=100)
    command_timeout_s: float = Field(default=10.0, gt=0)
    # Relay: events per read, and JetStream publishes awaiting an ack at once.
    relay_batch_max: int = Field(default=1000, ge=1, le=10_000)
    relay_inflight_max: int = Field(default=1000, ge=1, le=10_000)
    relay_poll_s: float = Field(default=1.0, gt=0)
    # Events older than this window may be re-published as duplicates after a relay outage;
    # consumers must dedupe by event id or position (see README).
    jetstream_duplicate_window_s: int = Field(default=120, ge=1)

    # Nodes that cannot keysend with a preimage we choose (Core Lightning's keysend picks its
    # own), so routing sends them invoice payments only.
    keysend_unsupported_nodes: list[str] = Field(
        default_factory=lambda: ["us-cln", "eu-cln", "asia-cln"]
    )
    # The policy document in force until a two-person-approved version replaces it.
    policy_file: Path | None = None
    # Executors report node health this often; three missed reports make a node unhealthy.
    health_interval_s: float = Field(default=5.0, gt=0)
    attempts_max: int = Field(default=3, ge=1, le=16)
    pay_timeout_s: int = Field(default=60, ge=1, le=3600)
    corridors: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_CORRIDORS))

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
