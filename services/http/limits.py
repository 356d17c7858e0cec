"""The HTTP API's limits, each with its reason (as in ``schemas/limits.py``)."""

from __future__ import annotations

from typing import Final

from schemas import limits

# A request body is one command; the engine refuses a command larger than this on NATS too,
# so a larger body could never be accepted: refuse it before reading it whole (413).
BODY_BYTES_MAX: Final = limits.COMMAND_BYTES_MAX
# The Idempotency-Key header is the command's ``idempotency_key``: the same bound as on NATS.
IDEMPOTENCY_KEY_CHARS_MAX: Final = limits.IDEMPOTENCY_KEY_CHARS_MAX
# The engine answers after its commit; a group commit under load stays far below this
# (the CLI waits as long: services/cli/engine.py REQUEST_TIMEOUT_S).
ENGINE_TIMEOUT_S: Final = 15.0
# What a 503 tells a client to wait before retrying: an engine restart takes about this long.
RETRY_AFTER_S: Final = 2
# The exception queue's default "stuck" bound, the CLI's `corridor exceptions` default.
STUCK_AFTER_S_DEFAULT: Final = 120
