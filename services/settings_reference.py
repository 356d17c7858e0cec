"""The configuration reference and the example file, generated from the settings model.

    python -m services.settings_reference          # rewrite both files
    python -m services.settings_reference --check  # exit 1 while either is stale

Writes ``docs/configuration.md`` (one table row per setting: TOML key, environment variables,
type, default, unit, description) and ``corridor.example.toml`` (every setting commented out at
its default) from ``services.settings.Settings``: its field descriptions, constraints and
``unit`` extras. A test fails while either committed file differs from what this produces, and
another loads the example through ``Settings``, so neither can drift from the code.

Secrets (``SecretStr`` fields) are marked so and never shown with a value.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import annotated_types
from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from services.settings import Settings

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
MARKDOWN_PATH: Final = Path("docs/configuration.md")
EXAMPLE_PATH: Final = Path("corridor.example.toml")
GENERATOR: Final = "python -m services.settings_reference"
# A default longer than this goes below the table, as TOML, instead of into its cell.
DEFAULT_CELL_CHARS_MAX: Final = 40
COMMENT_WIDTH: Final = 100
# Units spelled by a name's suffix; a setting without one names its unit in json_schema_extra.
SUFFIX_UNITS: Final = (("_msat", "msat"), ("_ms", "ms"), ("_s", "s"), ("_bytes", "bytes"))
_BARE_KEY: Final = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class SettingDoc:
    """What the reference says about one setting."""

    key: str  # the field name, which is also its TOML key
    env: tuple[str, ...]  # environment variables that set it, the preferred one first
    type: str
    default: Any  # the default value (None: unset); a secret's is never shown
    unit: str
    description: str
    secret: bool
    example: Any = None  # a value to show for a setting that is unset by default

    @property
    def is_table(self) -> bool:
        return isinstance(self.default, dict)


def describe(model: type[BaseSettings] = Settings) -> list[SettingDoc]:
    """One entry per field of ``model``, in declaration order.

    Raises ``ValueError`` for a field without a description: the reference needs one for each.
    """
    prefix = str(model.model_config.get("env_prefix", ""))
    docs = []
    for key, info in model.model_fields.items():
        if not info.description:
            raise ValueError(f"setting {key!r} has no description")
        default = info.get_default(call_default_factory=True)
        secret = _is_secret(info.annotation)
        docs.append(
            SettingDoc(
                key=key,
                env=_env_names(key, info, prefix),
                type=_type_text(info),
                default=None if secret or default is None else _plain(default),
                unit=_unit(key, info),
                description=" ".join(info.description.split()),
                secret=secret,
                example=_plain(info.examples[0]) if info.examples else None,
            )
        )
    return docs


def _env_names(key: str, info: FieldInfo, prefix: str) -> tuple[str, ...]:
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(choice).upper() for choice in alias.choices)
    if isinstance(alias, str):
        return (alias.upper(),)
    return ((prefix + key).upper(),)


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def _plain(value: Any) -> Any:
    """A default as plain data: paths as strings, containers recursively."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _unit(key: str, info: FieldInfo) -> str:
    extra = info.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("unit"), str):
        return str(extra["unit"])
    for suffix, unit in SUFFIX_UNITS:
        if key.endswith(suffix):
            return unit
    return ""


def _type_text(info: FieldInfo) -> str:
    annotation = info.annotation
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(members) < len(typing.get_args(annotation))
        annotation = members[0] if len(members) == 1 else annotation
    text = _base_type_text(annotation)
    bounds = _bounds_text(info.metadata)
    if bounds:
        text = f"{text} {bounds}" if bounds[0] in "<>≤≥" else f"{text}, {bounds}"
    if optional:
        text += ", optional"
    return text


def _base_type_text(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{v}`" for v in typing.get_args(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation)
        return f"list of {_base_type_text(item)}s"
    if origin is dict:
        key, value = typing.get_args(annotation)
        return f"table: {_base_type_text(key)} -> {_base_type_text(value)}"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}
    if annotation is SecretStr:
        return "string, secret"
    if annotation in names:
        return names[annotation]
    raise ValueError(f"no reference text for the type {annotation!r}")


def _bounds_text(metadata: Sequence[Any]) -> str:
    low = high = None
    parts = []
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low = item.ge
        elif isinstance(item, annotated_types.Le):
            high = item.le
        elif isinstance(item, annotated_types.Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Lt):
            parts.append(f"< {item.lt}")
    if low is not None and high is not None:
        parts.insert(0, f"{low:,} to {high:,}")
    elif low is not None:
        parts.insert(0, f"≥ {low:,}")
    elif high is not None:
        parts.insert(0, f"≤ {high:,}")
    return ", ".join(parts)


# -- TOML values ------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """``value`` as a TOML value (tables are written as sections, not here)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string for everything a setting holds.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise ValueError(f"no TOML form for {value!r}")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _table_lines(setting: SettingDoc) -> list[str]:
    lines = [f"[{toml_key(setting.key)}]"]
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in setting.default.items()]
    return lines


# -- docs/configuration.md --------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default_cell(setting: SettingDoc) -> str:
    if setting.secret:
        return "unset (secret)"
    if setting.default is None:
        return "unset"
    if setting.is_table:
        return f"see [below](#{setting.key.replace('_', '-')})"
    text = toml_value(setting.default)
    if len(text) > DEFAULT_CELL_CHARS_MAX:
        return f"see [below](#{setting.key.replace('_', '-')})"
    return f"`{text}`"


def _long_default(setting: SettingDoc) -> bool:
    return _default_cell(setting).startswith("see [below]")


def render_markdown(settings: Sequence[SettingDoc]) -> str:
    out = [
        "# Configuration reference",
        "",
        f"<!-- Generated by `{GENERATOR}` from services/settings.py.",
        "     Do not edit: change the model's descriptions and regenerate; a test fails while",
        "     this file is stale. -->",
        "",
        "Corridor reads one typed settings object (`services/settings.py`). Sources, highest",
        "precedence first:",
        "",
        "1. environment variables: `CORRIDOR_<KEY>` (case does not matter), and for the two",
        "   connection settings the plain `NATS_URL` and `DATABASE_URL`;",
        "2. the TOML file named by `CORRIDOR_CONFIG`, default `./corridor.toml` (read only if it",
        "   exists);",
        "3. the defaults below, which suit a local `corridor up`.",
        "",
        "A list or table given in an environment variable is written as JSON, e.g.",
        "`CORRIDOR_KEYSEND_UNSUPPORTED_NODES='[\"us-cln\"]'`. A value of the wrong type or out of",
        "range stops the process at start with the setting's name. Unknown keys are ignored.",
        "",
        "[`corridor.example.toml`](../corridor.example.toml) lists every setting commented out at",
        "its default, generated from the same model; copy it to `corridor.toml` and uncomment what",
        "you change. Secrets are marked *secret*: they have no default, never appear in a log line",
        "or a `repr`, and belong in the environment (or a file readable only by the service), not",
        "in a shared configuration file.",
        "",
        "| key (TOML) | environment | type | default | unit | description |",
        "|---|---|---|---|---|---|",
    ]
    for s in settings:
        env = ", ".join(f"`{name}`" for name in s.env)
        description = s.description + (" **Secret.**" if s.secret else "")
        out.append(
            f"| `{s.key}` | {env} | {_cell(s.type)} | {_cell(_default_cell(s))} "
            f"| {_cell(s.unit)} | {_cell(description)} |"
        )
    long_defaults = [s for s in settings if _long_default(s)]
    if long_defaults:
        out += ["", "## Long defaults"]
        for s in long_defaults:
            lines = _table_lines(s) if s.is_table else [f"{s.key} = {toml_value(s.default)}"]
            out += ["", f"### {s.key}", "", "```toml", *lines, "```"]
    out += [
        "",
        "## What is not a setting",
        "",
        "There is no separate executor settings model. `corridor executor` reads `log_level`,",
        "`state_dir` and `jetstream_duplicate_window_s` from these settings, takes its region,",
        "node and keysend secret file from its command line (`corridor executor --help`; see",
        "[operations/real-nodes.md](operations/real-nodes.md)), and its other bounds are named",
        "constants in `services/executor/limits.py`. Node credentials live only in the `--node`",
        "URI and the files it names.",
        "",
    ]
    return "\n".join(out)


# -- corridor.example.toml --------------------------------------------------------------------


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, COMMENT_WIDTH - 2, initial_indent="# ", subsequent_indent="# ")


def render_example(settings: Sequence[SettingDoc]) -> str:
    out = [
        "# Corridor configuration: every setting, commented out at its default.",
        f"# Generated by `{GENERATOR}` from services/settings.py: do not",
        "# edit this file. Copy it to corridor.toml (or point CORRIDOR_CONFIG at the copy) and",
        "# uncomment what you change. Environment variables (CORRIDOR_<KEY>, NATS_URL,",
        "# DATABASE_URL) override it. Reference: docs/configuration.md",
    ]
    # Keys after a [table] header belong to that table, so the tables come last.
    for s in sorted(settings, key=lambda s: s.is_table):
        out.append("")
        out += _comment(s.description)
        facts = [f"type: {s.type.replace('`', '')}"]
        if s.unit:
            facts.append(f"unit: {s.unit}")
        facts.append("env: " + ", ".join(s.env) + (" (JSON)" if s.is_table else ""))
        out += _comment("; ".join(facts))
        if s.secret:
            out += _comment(
                "Secret: prefer the environment variable; a file holding it must be readable "
                "only by the service."
            )
            out.append(f'#{s.key} = ""')
        elif s.default is None:
            example = f", e.g. {s.key} = {toml_value(s.example)}" if s.example is not None else ""
            out += _comment(f"Unset by default (TOML has no null){example}.")
        elif s.is_table:
            out += [f"#{line}" for line in _table_lines(s)]
        else:
            out.append(f"#{s.key} = {toml_value(s.default)}")
    return "\n".join(out) + "\n"


# -- files ------------------------------------------------------------------------------------


def outputs(model: type[BaseSettings] = Settings) -> dict[Path, str]:
    """Repository-relative path -> the text it should hold."""
    settings = describe(model)
    return {MARKDOWN_PATH: render_markdown(settings), EXAMPLE_PATH: render_example(settings)}


def stale(root: Path = REPO_ROOT) -> list[Path]:
    """The generated files under ``root`` that differ from what the model produces."""
    found = []
    for relative, text in outputs().items():
        path = root / relative
        if not path.exists() or path.read_text() != text:
            found.append(relative)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=GENERATOR, description="Generate the configuration reference and example."
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale(args.root)
        for relative in out_of_date:
            print(f"{relative} is stale: run `{GENERATOR}`", file=sys.stderr)
        return 1 if out_of_date else 0
    for relative, text in outputs().items():
        path = args.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
