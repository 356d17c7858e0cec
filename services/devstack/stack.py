"""The dev stack: the servers Corridor needs, embedded or given by NATS_URL and DATABASE_URL."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from services.devstack.nats import NatsServer
from services.devstack.postgres import PostgresServer


@dataclass
class DevStack:
    state_dir: Path
    fsync: bool = True
    # False: a PostgreSQL cluster root keeps outside state_dir is removed at stop (ADR 0040).
    keep_data: bool = True
    nats_url: str = ""
    database_url: str = ""
    _nats: NatsServer | None = None
    _postgres: PostgresServer | None = None
    _started: list[str] = field(default_factory=list)

    def start(self) -> DevStack:
        """Start whatever is not given by the environment. Idempotent per instance."""
        atexit.register(self.stop)
        try:
            self.nats_url = os.environ.get("NATS_URL", "")
            if not self.nats_url:
                self._nats = NatsServer(
                    self.state_dir / "nats", sync_interval="always" if self.fsync else "2m"
                )
                self._nats.start()
                self.nats_url = self._nats.url
            self.database_url = os.environ.get("DATABASE_URL", "")
            if not self.database_url:
                self._postgres = PostgresServer(
                    self.state_dir / "postgres", fsync=self.fsync, keep_data=self.keep_data
                )
                self._postgres.start()
                self.database_url = self._postgres.url
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._nats is not None:
            self._nats.stop()
            self._nats = None
        if self._postgres is not None:
            self._postgres.stop()
            self._postgres = None

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
