"""Load a policy document from a YAML or JSON file, with errors that name the field.

msgspec reports a failure inside a mapping as ``$.corridors[...]``; ``locate_error`` walks the
raw data again to name the key (``corridors.us-eu.amount_msat_max``), so the operator who wrote
the file sees exactly which line to fix.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
import yaml

from schemas.errors import CorridorError
from schemas.policy_document import PolicyDocument

DEFAULT_POLICY_PATH: Final = Path(__file__).with_name("default.yaml")
# A deny list of 100,000 pubkeys is about 7 MB of YAML; twice that is surely a mistake.
POLICY_FILE_BYTES_MAX: Final = 16 * 1024 * 1024
PolicyFormat = Literal["yaml", "json"]


class PolicyDocumentInvalid(CorridorError):
    code = "invalid_policy_document"


def load_default_policy() -> PolicyDocument:
    return load_policy(DEFAULT_POLICY_PATH)


def load_policy(path: Path) -> PolicyDocument:
    """Read and validate ``path``; the format follows the suffix (``.json``, else YAML)."""
    try:
        size_bytes = path.stat().st_size
        if size_bytes > POLICY_FILE_BYTES_MAX:
            raise PolicyDocumentInvalid(
                f"{path}: {size_bytes} bytes, more than {POLICY_FILE_BYTES_MAX}", field=None
            )
        text = path.read_bytes()
    except OSError as exc:
        raise PolicyDocumentInvalid(f"{path}: {exc.strerror or exc}") from exc
    return parse_policy(text, fmt="json" if path.suffix.lower() == ".json" else "yaml")


def parse_policy(text: str | bytes, *, fmt: PolicyFormat) -> PolicyDocument:
    raw = _parse_json(text) if fmt == "json" else _parse_yaml(text)
    return convert_policy(raw)


def convert_policy(raw: object) -> PolicyDocument:
    """Validate already-parsed data (e.g. the ``document`` of a ``ProposePolicy``)."""
    try:
        return msgspec.convert(raw, PolicyDocument)
    except msgspec.ValidationError:
        field, reason = locate_error(raw, PolicyDocument)
        raise PolicyDocumentInvalid(f"{field}: {reason}", field=field) from None


def _parse_json(text: str | bytes) -> object:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise PolicyDocumentInvalid(f"not valid JSON: {exc}") from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: a second ``us-eu:`` must not silently win."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def _parse_yaml(text: str | bytes) -> object:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PolicyDocumentInvalid("not valid YAML: " + " ".join(str(exc).split())) from None


def locate_error(raw: object, tp: Any, path: str = "") -> tuple[str, str]:
    """The deepest field path at which ``raw`` does not validate as ``tp``, and why.

    ``raw`` must not validate; the path is dotted (``autonomy.levels.trusted.auto_max_msat``).
    """
    found = _locate(raw, tp, path)
    assert found is not None, "locate_error called on valid data"
    field, reason = found
    for prefix in ("Object contains unknown field `", "Object missing required field `"):
        if reason.startswith(prefix):
            name = reason[len(prefix) :].rstrip("`")
            field = _join(field, "." + name)
            reason = "unknown field" if "unknown" in prefix else "required field is missing"
    if "got `bool`" in reason:
        reason += " (YAML reads unquoted yes/no/on/off/NO as booleans: quote the value)"
    return field or "(document)", reason


def _locate(raw: object, tp: Any, path: str) -> tuple[str, str] | None:
    try:
        msgspec.convert(raw, tp)
    except msgspec.ValidationError as exc:
        reason, _, where = str(exc).partition(" - at `$")
    else:
        return None
    for child_raw, child_tp, child_path in _children(raw, tp, path):
        found = _locate(child_raw, child_tp, child_path)
        if found is not None:
            return found
    return _join(path, where.rstrip("`")), reason


def _join(path: str, suffix: str) -> str:
    if not suffix:
        return path
    if suffix.startswith("["):
        return path + suffix
    return f"{path}{suffix}" if path else suffix.lstrip(".")


def _children(raw: object, tp: Any, path: str) -> Iterator[tuple[object, Any, str]]:
    tp = _unwrap(tp, raw)
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct) and isinstance(raw, dict):
        for info in msgspec.structs.fields(tp):
            if info.encode_name in raw:
                yield raw[info.encode_name], info.type, _join(path, "." + info.encode_name)
    elif origin is dict and isinstance(raw, dict):
        key_tp, value_tp = typing.get_args(tp)
        for key, value in raw.items():
            yield key, key_tp, _join(path, f".{key}")
            yield value, value_tp, _join(path, f".{key}")
    elif origin in (tuple, list) and isinstance(raw, list):
        item_tp = typing.get_args(tp)[0]
        for index, item in enumerate(raw):
            yield item, item_tp, f"{path}[{index}]"


def _unwrap(tp: Any, raw: object) -> Any:
    """Strip ``Annotated`` and, for a value that is not None, ``X | None``."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and raw is not None:
            options = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(options) == 1:
                tp = options[0]
                continue
        return tp
