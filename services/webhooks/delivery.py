"""One HTTP attempt and the retry schedule (ADR 0178).

An attempt ends in exactly one of: delivered (any 2xx), gone (410: the endpoint is disabled,
as Standard Webhooks says), or retry with a short error code (anything else, a timeout, a
refused connection). The delay before try n+1 is drawn uniformly from [0, min(max, first *
2^(n-1))] ("full jitter"), from a generator seeded per endpoint, so that endpoints that failed
together do not retry together, and a test run is repeatable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

import httpx

from services.webhooks.payload import WebhookMessage, signed_headers

GONE: Final = 410
# Doubling stops growing past this exponent; the cap (``backoff_max_s``) applies long before.
BACKOFF_EXPONENT_MAX: Final = 30

Result = Literal["delivered", "gone", "retry"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    period_s: float
    first_s: float
    max_s: float
    timeout_s: float

    def __post_init__(self) -> None:
        assert 0 < self.first_s <= self.max_s and self.period_s > 0 and self.timeout_s > 0


@dataclass(frozen=True, slots=True)
class Attempt:
    result: Result
    error: str = ""  # a short code for a retry: "http_503", "timeout", "connect"
    status: int | None = None


def backoff_s(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """The delay after failed try number ``attempt`` (1-based)."""
    assert attempt >= 1
    ceiling = min(policy.max_s, policy.first_s * 2 ** min(attempt - 1, BACKOFF_EXPONENT_MAX))
    return rng.uniform(0, ceiling)


async def attempt(
    client: httpx.AsyncClient, url: str, message: WebhookMessage, secret: str
) -> Attempt:
    headers = signed_headers(message, secret, datetime.now(tz=UTC))
    try:
        response = await client.post(url, content=message.body.encode(), headers=headers)
    except httpx.TimeoutException:
        return Attempt("retry", "timeout")
    except httpx.TransportError:
        return Attempt("retry", "connect")
    status = response.status_code
    if 200 <= status < 300:
        return Attempt("delivered", status=status)
    if status == GONE:
        return Attempt("gone", status=status)
    return Attempt("retry", f"http_{status}", status=status)


def new_client(timeout_s: float) -> httpx.AsyncClient:
    """One client per endpoint, one connection: a slow receiver holds only its own. Redirects
    are not followed: the URL the owner registered, and checked, is the only one called."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s),
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        follow_redirects=False,
        trust_env=False,
    )
