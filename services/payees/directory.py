"""``PayeeDirectory``: payees' names and contact details in ``payee_personal_data``, a
PostgreSQL table outside the append-only log, so that they can be erased (ADR 0270).

Only the edge that has the person in front of it writes here (``corridor payees``); the
engine, the bus and the log never see these values. Errors name the field, never its value,
and nothing here logs a value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

import asyncpg
import msgspec

from schemas import errors
from schemas.payee_messages import PAYEE_ID_PATTERN

# Long enough for any person's full name in any script; longer is a paste mistake.
NAME_CHARS_MAX: Final = 200
# RFC 5321's limit on a forward path (254 characters usable): longer is no address.
EMAIL_CHARS_MAX: Final = 254
# One ``@`` with something on each side: an address is checked by mailing it, not by regex.
_EMAIL_SHAPE: Final = re.compile(r"^[^@\s]+@[^@\s]+$")
_PAYEE_ID: Final = re.compile(PAYEE_ID_PATTERN)
# Rows one ``names`` call reads: a page of ``corridor payees list``.
NAMES_PER_CALL_MAX: Final = 1000


class PersonalData(msgspec.Struct, frozen=True, kw_only=True):
    payee_id: str
    name: str
    email: str | None = None

    def __repr__(self) -> str:  # keep the values out of logs and tracebacks
        return f"PersonalData(payee_id={self.payee_id!r}, name=<{len(self.name)} chars>)"


def validated(payee_id: str, name: str, email: str | None) -> PersonalData:
    """The row to store, or a ``SchemaViolation`` naming the field (never its value)."""
    if not _PAYEE_ID.match(payee_id):
        raise errors.SchemaViolation("not a payee id", field="payee_id")
    name = name.strip()
    if not name or len(name) > NAME_CHARS_MAX or "\x00" in name:
        raise errors.SchemaViolation(
            f"a name has 1 to {NAME_CHARS_MAX} characters", field="name", limit=NAME_CHARS_MAX
        )
    if email is not None:
        email = email.strip()
        if len(email) > EMAIL_CHARS_MAX or not _EMAIL_SHAPE.match(email):
            raise errors.SchemaViolation(
                "not an e-mail address", field="email", limit=EMAIL_CHARS_MAX
            )
    return PersonalData(payee_id=payee_id, name=name, email=email)


class PayeeDirectory:
    """On a connection pool of the engine's role (``corridor_engine``)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def put(self, data: PersonalData) -> None:
        """Store or replace a payee's row (onboarding again with the same key rewrites it)."""
        await self._pool.execute(
            """INSERT INTO payee_personal_data (payee_id, name, email) VALUES ($1, $2, $3)
               ON CONFLICT (payee_id) DO UPDATE
                   SET name = EXCLUDED.name, email = EXCLUDED.email, updated_at = now()""",
            data.payee_id, data.name, data.email,
        )  # fmt: skip

    async def get(self, payee_id: str) -> PersonalData | None:
        row = await self._pool.fetchrow(
            "SELECT payee_id, name, email FROM payee_personal_data WHERE payee_id = $1", payee_id
        )
        return None if row is None else _data(row)

    async def names(self, payee_ids: Sequence[str]) -> dict[str, PersonalData]:
        assert len(payee_ids) <= NAMES_PER_CALL_MAX, len(payee_ids)
        rows = await self._pool.fetch(
            "SELECT payee_id, name, email FROM payee_personal_data WHERE payee_id = ANY($1)",
            list(payee_ids),
        )
        return {r["payee_id"]: _data(r) for r in rows}

    async def erase(self, payee_id: str) -> bool:
        """Delete the payee's row; whether there was one. Idempotent."""
        status = await self._pool.execute(
            "DELETE FROM payee_personal_data WHERE payee_id = $1", payee_id
        )
        return str(status) != "DELETE 0"

    async def erase_all(self, payee_ids: Iterable[str]) -> int:
        """Delete the rows of payees the log says were erased (after a backup is restored):
        how many were still there."""
        status = await self._pool.execute(
            "DELETE FROM payee_personal_data WHERE payee_id = ANY($1)", list(payee_ids)
        )
        return int(str(status).rsplit(" ", 1)[1])


def _data(row: Any) -> PersonalData:
    return PersonalData(payee_id=row["payee_id"], name=row["name"], email=row["email"])
