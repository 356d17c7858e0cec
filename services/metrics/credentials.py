"""``corridor_credential_expiry_timestamp_seconds{role,id}``: when each live credential that was
issued with an expiry stops working (``corridor creds add --expires-in``), read from the
registry file as the engine follows it; the ``CorridorCredentialExpiringSoon`` alert fires a
week before (ADR 0153)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.identity.registry import Registry


class CredentialExpiryCollector(Collector):
    def __init__(self, registry: object) -> None:
        # Anything with a ``registry`` (``RegistryFile``, ``IndexedRegistry``): the current one.
        self._source = registry

    def collect(self) -> Iterable[Metric]:
        current: Registry = self._source.registry  # type: ignore[attr-defined]
        family = GaugeMetricFamily(
            "corridor_credential_expiry_timestamp_seconds",
            "When a live credential issued with an expiry stops working (Unix time).",
            labels=["role", "id"],
        )
        for credential in sorted(current.live(), key=lambda c: (c.role, c.id)):
            if credential.expires_at_ms is not None:
                family.add_metric([credential.role, credential.id], credential.expires_at_ms / 1000)
        return [family]
