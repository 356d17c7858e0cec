"""Named limits for everything that crosses the wire (TigerBeetle style: a limit on everything).

Each limit has a reason. Changing one is a contract change: regenerate `schemas/json/`.
"""

from typing import Final

# One command must fit easily in a NATS message (server default max_payload is 1 MiB) and
# a BOLT 11 invoice with routing hints is at most a few KiB; 64 KiB leaves room for metadata.
COMMAND_BYTES_MAX: Final = 64 * 1024

# 21 million BTC in msat: nothing larger can exist on the network.
AMOUNT_MSAT_MAX: Final = 21_000_000 * 100_000_000 * 1000

IDEMPOTENCY_KEY_CHARS_MAX: Final = 255
# Caller ids become NATS subject tokens, so they must not contain '.', '*', '>' or spaces.
CALLER_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
CORRIDOR_PATTERN: Final = r"^[a-z0-9]{2,16}-[a-z0-9]{2,16}$"
REGION_PATTERN: Final = r"^[a-z0-9]{2,16}$"
NODE_PUBKEY_PATTERN: Final = r"^0[23][0-9a-f]{64}$"
HEX32_PATTERN: Final = r"^[0-9a-f]{64}$"
# BOLT 11 has no hard length limit; LND refuses payment requests longer than 7089 chars.
PAYMENT_REQUEST_CHARS_MAX: Final = 7089

METADATA_ENTRIES_MAX: Final = 16
METADATA_KEY_CHARS_MAX: Final = 64
METADATA_VALUE_CHARS_MAX: Final = 256

# Deadlines longer than a week are almost certainly unit mistakes (ms given as s).
DEADLINE_S_MAX: Final = 7 * 24 * 3600
REASON_CHARS_MAX: Final = 512
# Evidence an operator attaches to an exception's resolution (a node's record as JSON, a
# ticket's text), stored in the event: a few KiB holds any node's payment record with room to
# spare and keeps one command far below COMMAND_BYTES_MAX.
EVIDENCE_CHARS_MAX: Final = 4096
OPERATOR_ID_PATTERN: Final = CALLER_ID_PATTERN

# An invoice is created moments before it is paid: a creation time more than an hour ahead of
# the engine's clock is a wrong clock or a forged date, never an honest invoice. (BOLT 11
# timestamps have 35 bits, so without this an invoice could claim the year 3058.)
INVOICE_CLOCK_SKEW_S_MAX: Final = 3600
# LND's and CLN's longest invoice expiry in practice is a year; an expiry beyond that (BOLT 11
# allows up to 2**30 s, 34 years, in the field) would keep a stale payee payable for decades.
INVOICE_EXPIRY_S_MAX: Final = 365 * 24 * 3600
# PostgreSQL stores no U+0000: a text column refuses the byte (SQLSTATE 22021) and jsonb the
# \u0000 escape (22P05). One such string fails the transaction, and the engine commits many
# commands in one, so it is refused at the edge in every string and key (schemas/storable.py).
# Lone surrogates (\ud800) cannot be UTF-8 at all; the JSON decoder already refuses them.
TEXT_CHARS_FORBIDDEN: Final = "\x00"
# The deepest message we define (a policy document) nests under 10 levels. The JSON decoder
# recurses once per level and raises RecursionError near 1,000; a limit far below that keeps
# every refusal coded.
NESTING_DEPTH_MAX: Final = 32
# Correlation and causation ids arrive in headers and land in every event's metadata; a UUID
# is 36 characters, and no id needs more than 256.
HEADER_ID_CHARS_MAX: Final = 256

# Receive intents (issue 18, ADR 0220).
# BOLT 11's description field is at most 639 bytes (1023 five-bit groups); a memo longer than
# that cannot be put in an invoice, so it is refused before any node is asked.
RECEIVE_MEMO_CHARS_MAX: Final = 639
# An invoice that lives under a minute cannot reach a payer; one that lives longer than a week
# is a unit mistake (ms given as s) or a liability: the node keeps it payable all that time.
RECEIVE_EXPIRY_S_MIN: Final = 60
RECEIVE_EXPIRY_S_MAX: Final = 7 * 24 * 3600
# LND's and Core Lightning's default invoice expiry.
RECEIVE_EXPIRY_S_DEFAULT: Final = 3600
# Most a node can hold for us in one channel without wumbo (2**24 sat); a larger receive cannot
# be paid into a standard channel, and an invoice asking for it is a unit mistake.
RECEIVE_AMOUNT_MSAT_MAX: Final = (2**24 - 1) * 1000
# A node's settlement index (LND settle_index, CLN pay_index) is a uint64 counting from 1; the
# JSON Schema tooling holds integers to int64, which no node's count of settlements reaches.
PAY_INDEX_MAX: Final = 2**63 - 1
