"""The dev stack: the servers Corridor needs, embedded or given by NATS_URL and DATABASE_URL.

The embedded nats-server accepts nkey users only, from the credential registry in
``<identity_dir>/auth/`` (ADR 0060). Starting the stack makes sure an engine credential exists
there (``engine_creds``), so a stack is never open to anyone and never unusable by its owner.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from services.devstack.nats import NatsServer
from services.devstack.nats_cluster import NatsCluster
from services.devstack.postgres import PostgresServer, provision_corridor

if TYPE_CHECKING:
    from services.eventstore.roles import RoleUrls
    from services.identity.registry import Registry

# The engine credential a dev stack makes for itself: <identity_dir>/auth/engine-engine-1.nk.
ENGINE_ID: Final = "engine-1"
CREDS_ENV: Final = "CORRIDOR_CREDS"


@dataclass
class DevStack:
    state_dir: Path
    fsync: bool = True
    # False: a PostgreSQL cluster root keeps outside state_dir is removed at stop (ADR 0040).
    keep_data: bool = True
    nats_url: str = ""
    # The engine's role's URL, password included (ADR 0064); DATABASE_URL as given, if set.
    database_url: str = field(default="", repr=False)
    # The embedded PostgreSQL's URL per role (the superuser's, the owner's for migrations, the
    # auditor's); None when DATABASE_URL names the server.
    database_urls: RoleUrls | None = field(default=None, repr=False)
    # The state directory whose auth/ holds the credential registry (default: state_dir).
    identity_dir: Path | None = None
    # The engine's seed file, once started with an embedded server (None with NATS_URL).
    engine_creds: Path | None = None
    # More than 1: a nats-server cluster of that many members (ADR 0196); nats_url names all.
    nats_cluster_size: int = 1
    _nats: NatsServer | None = None
    _cluster: NatsCluster | None = None
    _postgres: PostgresServer | None = None
    _started: list[str] = field(default_factory=list)

    def start(self) -> DevStack:
        """Start whatever is not given by the environment. Idempotent per instance."""
        atexit.register(self.stop)
        try:
            self.nats_url = os.environ.get("NATS_URL", "")
            if not self.nats_url and self.nats_cluster_size > 1:
                self._cluster = NatsCluster(
                    self.state_dir / "nats",
                    registry=self._registry(),
                    size=self.nats_cluster_size,
                    sync_interval="always" if self.fsync else "2m",
                )
                self._cluster.start()
                self.nats_url = self._cluster.url
            elif not self.nats_url:
                self._nats = NatsServer(
                    self.state_dir / "nats",
                    registry=self._registry(),
                    sync_interval="always" if self.fsync else "2m",
                )
                self._nats.start()
                self.nats_url = self._nats.url
            self.database_url = os.environ.get("DATABASE_URL", "")
            if not self.database_url:
                self._postgres = PostgresServer(
                    self.state_dir / "postgres", fsync=self.fsync, keep_data=self.keep_data
                )
                self._postgres.start()
                self.database_urls = provision_corridor(self._postgres)
                self.database_url = self.database_urls.engine
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def home(self) -> Path:
        """The directory whose ``auth/`` holds the registry and the seeds made here."""
        return self.identity_dir or self.state_dir

    def _registry(self) -> Registry:
        from services.identity import nats_auth
        from services.identity.registry import load_registry, registry_path

        self.engine_creds = nats_auth.ensure(self.home, role="engine", ident=ENGINE_ID)
        self._admit_starter()
        return load_registry(registry_path(self.home))

    def _admit_starter(self) -> None:
        """Admit the credential ``CORRIDOR_CREDS`` names, as an engine, if the registry does
        not know its key: every connect in the starting process uses that variable when it is
        set (services/bus/jetstream.py), so the stack's starter can always use its stack. The
        key is recorded in the registry (``engine starter-...``), where ``corridor creds``
        lists and revokes it like any other."""
        from services.identity import nats_auth
        from services.identity.registry import load_registry, registry_path

        seed_file = os.environ.get(CREDS_ENV, "")
        if not seed_file:
            return
        key = nats_auth.read_public_key(Path(seed_file))
        if load_registry(registry_path(self.home)).by_public_key(key) is None:
            ident = f"starter-{key[1:13].lower()}"
            nats_auth.register_key(self.home, role="engine", ident=ident, public_key=key)

    def nats_endpoints(self) -> dict[str, Any]:
        """What ``endpoints.json`` says about NATS: its URL, that it takes nkey users, and for
        an embedded server what ``corridor creds`` needs to reload it."""
        entries: dict[str, Any] = {"nats_url": self.nats_url, "nats_auth": "nkey"}
        if self._nats is not None:
            entries.update(
                nats_pid=self._nats.pid,
                nats_auth_file=str(self._nats.auth_file),
                nats_monitor_url=self._nats.monitor_url,
                credentials=str(self.home / "auth"),
            )
        return entries

    def reload_credentials(self) -> None:
        """Serve the registry as it is now (after ``corridor creds`` or ``nats_auth.ensure``)."""
        from services.identity.registry import load_registry, registry_path

        assert self._nats is not None, "only an embedded server is reloaded"
        self._nats.reload(load_registry(registry_path(self.home)))

    @property
    def cluster(self) -> NatsCluster:
        assert self._cluster is not None, "started with nats_cluster_size > 1"
        return self._cluster

    def stop(self) -> None:
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = None
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
