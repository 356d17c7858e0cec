"""Load pilot thresholds from a TOML file, with errors that name the field (ADR 0156).

The shipped versions sit beside this module (``thresholds/v<N>.toml``); ``--thresholds FILE``
names another. Unknown keys are refused, so a typo (``latency_p95_ms``) fails loudly instead of
silently meaning "not checked".
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Final

import msgspec

from schemas.errors import CorridorError
from schemas.pilot import PilotThresholds
from services.policy.loader import locate_error

THRESHOLDS_DIR: Final = Path(__file__).with_name("thresholds")
DEFAULT_THRESHOLDS_PATH: Final = THRESHOLDS_DIR / "v1.toml"
# The file holds a dozen numbers; anything this large is the wrong file.
THRESHOLDS_FILE_BYTES_MAX: Final = 64 * 1024


class ThresholdsInvalid(CorridorError):
    code = "invalid_pilot_thresholds"


def load_thresholds(path: Path | None = None) -> PilotThresholds:
    path = path or DEFAULT_THRESHOLDS_PATH
    try:
        size_bytes = path.stat().st_size
        if size_bytes > THRESHOLDS_FILE_BYTES_MAX:
            raise ThresholdsInvalid(
                f"{path}: {size_bytes} bytes, more than {THRESHOLDS_FILE_BYTES_MAX}",
                limit=THRESHOLDS_FILE_BYTES_MAX,
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ThresholdsInvalid(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_thresholds(text, source=str(path))


def parse_thresholds(text: str, *, source: str = "thresholds") -> PilotThresholds:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ThresholdsInvalid(f"{source}: not valid TOML: {exc}") from None
    try:
        return msgspec.convert(raw, PilotThresholds)
    except msgspec.ValidationError:
        field, reason = locate_error(raw, PilotThresholds)
    raise ThresholdsInvalid(f"{source}: {field}: {reason}", field=field)
