"""docs/operations/real-nodes.md cannot drift from the code.

- Every ``corridor ...`` command in its code blocks parses with the real CLI parser.
- The ``lncli bakemacaroon`` URI permissions are exactly the gRPC methods the LND adapter
  calls (read from the adapter's source, whatever module its stubs come from).
- The ``lightning-cli createrune`` methods, and the methods the page lists, are exactly the
  JSON-RPC methods the Core Lightning adapter calls.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "operations" / "real-nodes.md"
LIGHTNING = REPO / "services" / "lightning"
LND_PROTOS = REPO.parent / "shared" / "conformance" / "lnd" / "protos"

# How lnd.py names its services: the ``_unary`` service argument and the stub attributes.
LND_UNARY_SERVICES = {"lightning": "lnrpc.Lightning", "router": "routerrpc.Router"}
LND_STUB_ATTRIBUTES = {"_lightning": "lnrpc.Lightning", "_router": "routerrpc.Router"}
# How cln.py sends a JSON-RPC call: ``self._call(method, ...)`` / ``self._raw(method, ...)``
# / ``self._chain_call(method, ...)`` (on-chain calls, with their own error table).
CLN_CALL_ATTRIBUTES = {"_call", "_raw", "_chain_call"}
SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "(", ")"}
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


# -- reading the page -------------------------------------------------------------------------


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return [(m.group(1), m.group(2)) for m in _FENCE.finditer(text)]


def command_lines(body: str) -> Iterator[str]:
    """Lines of a shell block, continuations joined and ``$ `` prompts removed."""
    pending = ""
    for raw in body.splitlines():
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        yield line.removeprefix("$ ")


def shell_words(line: str) -> list[str]:
    """The words of the first simple command on ``line``, without leading VAR=value."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words: list[str] = []
    for token in lexer:
        if token in SHELL_OPERATORS:
            break
        if not words and _ENV_ASSIGNMENT.match(token):
            continue
        words.append(token)
    return words


def doc_commands(program: str) -> list[list[str]]:
    text = DOC.read_text()
    found = []
    for language, body in code_blocks(text):
        if language in ("toml", "text"):
            continue
        for line in command_lines(body):
            words = shell_words(line) if line and not line.startswith("#") else []
            if words and words[0] == program:
                found.append(words)
    return found


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """None if ``argv`` parses, else argparse's complaint."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit:
        return err.getvalue().strip().splitlines()[-1] if err.getvalue() else "exit"
    return None


def test_every_corridor_command_parses() -> None:
    commands = doc_commands("corridor")
    assert len(commands) >= 10, "the page lost its commands, or this test cannot find them"
    assert {words[1] for words in commands} >= {"up", "sim", "executor", "submit", "corridors"}
    failures = []
    for words in commands:
        complaint = _parse(build_parser(), words[1:])
        if complaint is not None:
            failures.append(f"{shlex.join(words)}\n    {complaint}")
    assert not failures, "commands in real-nodes.md that do not parse:\n" + "\n".join(failures)


def test_executor_commands_cover_every_uri_scheme() -> None:
    nodes = [w[w.index("--node") + 1] for w in doc_commands("corridor") if "--node" in w]
    schemes = {node.partition("://")[0] for node in nodes if "://" in node}
    assert {"lnd", "cln"} <= schemes


# -- LND: the macaroon ------------------------------------------------------------------------


def _string(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def lnd_adapter_rpcs() -> set[str]:
    """``/package.Service/Method`` for every gRPC method the LND adapter modules call."""
    found: set[str] = set()
    for path in sorted(LIGHTNING.glob("lnd*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            func = node.func
            if func.attr == "_unary":
                service, method = (_string(arg) for arg in node.args[:2])
                assert service is not None and method is not None, (
                    f"{path.name}:{node.lineno}: _unary with a computed method; teach this test"
                )
                assert service in LND_UNARY_SERVICES, f"unknown service {service!r}"
                found.add(f"/{LND_UNARY_SERVICES[service]}/{method}")
            elif isinstance(func.value, ast.Attribute) and func.value.attr in LND_STUB_ATTRIBUTES:
                found.add(f"/{LND_STUB_ATTRIBUTES[func.value.attr]}/{func.attr}")
    return found


def doc_macaroon_uris() -> list[set[str]]:
    return [
        {word.removeprefix("uri:") for word in words if word.startswith("uri:")}
        for words in doc_commands("lncli")
        if words[1:2] == ["bakemacaroon"]
    ]


def test_lnd_adapter_calls_are_found() -> None:
    rpcs = lnd_adapter_rpcs()
    # If these vanish the adapter's call style changed: teach lnd_adapter_rpcs the new one.
    assert {"/routerrpc.Router/SendPaymentV2", "/routerrpc.Router/TrackPaymentV2"} <= rpcs
    assert any(rpc.startswith("/lnrpc.Lightning/") for rpc in rpcs)


def test_macaroon_grants_exactly_what_the_lnd_adapter_calls() -> None:
    rpcs = lnd_adapter_rpcs()
    bakes = doc_macaroon_uris()
    assert bakes, "real-nodes.md has no `lncli bakemacaroon` command"
    for uris in bakes:
        assert uris == rpcs, (
            f"missing from the macaroon: {sorted(rpcs - uris)}; "
            f"not called by the adapter: {sorted(uris - rpcs)}"
        )
    table = set(re.findall(r"^\| `(/[\w.]+/\w+)` \|", DOC.read_text(), re.MULTILINE))
    assert table == rpcs, "the table of gRPC methods differs from the adapter's calls"


def test_lnd_rpcs_exist_in_the_protos() -> None:
    if not LND_PROTOS.is_dir():
        pytest.skip(f"no LND protos at {LND_PROTOS}")
    known: set[str] = set()
    for proto in LND_PROTOS.rglob("*.proto"):
        text = proto.read_text()
        package = re.search(r"^package\s+([\w.]+);", text, re.MULTILINE)
        assert package is not None
        for service, body in re.findall(r"^service\s+(\w+)\s*\{(.*?)^\}", text, re.M | re.S):
            for method in re.findall(r"^\s*rpc\s+(\w+)\s*\(", body, re.MULTILINE):
                known.add(f"/{package.group(1)}.{service}/{method}")
    assert lnd_adapter_rpcs() <= known


# -- Core Lightning: the rune -----------------------------------------------------------------


def _pay_commands(tree: ast.Module) -> set[str]:
    """The values of ``PayCommand = Literal[...]``: what ``self._pay_command`` may be."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "PayCommand" for t in node.targets)
            and isinstance(node.value, ast.Subscript)
        ):
            values = node.value.slice
            items = values.elts if isinstance(values, ast.Tuple) else [values]
            return {text for item in items if (text := _string(item)) is not None}
    return set()


class _ClnCalls(ast.NodeVisitor):
    """Collects the first argument of ``self._call``/``self._raw`` calls, resolving a local
    variable or a ``PayCommand`` parameter; a parameter passed through is the caller's."""

    def __init__(self, path: Path, pay_commands: set[str]) -> None:
        self.path = path
        self.pay_commands = pay_commands
        self.methods: set[str] = set()
        self._scopes: list[tuple[dict[str, ast.expr | None], dict[str, ast.expr]]] = []

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        params = {a.arg: a.annotation for a in [*node.args.args, *node.args.kwonlyargs]}
        local: dict[str, ast.expr] = {}
        for child in ast.walk(node):
            if isinstance(child, ast.Assign) and len(child.targets) == 1:
                target = child.targets[0]
                if isinstance(target, ast.Name):
                    local[target.id] = child.value
            elif (
                isinstance(child, ast.AnnAssign)
                and isinstance(child.target, ast.Name)
                and child.value is not None
            ):
                local[child.target.id] = child.value
        self._scopes.append((params, local))
        self.generic_visit(node)
        self._scopes.pop()

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def _resolve(self, expr: ast.expr, depth: int = 0) -> set[str] | None:
        """The methods ``expr`` may name; None for a parameter passed through."""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return {expr.value}
        if "pay_command" in ast.unparse(expr):
            assert self.pay_commands, "PayCommand = Literal[...] not found"
            return set(self.pay_commands)
        if isinstance(expr, ast.Name) and self._scopes and depth < 5:
            params, local = self._scopes[-1]
            if expr.id in local:
                return self._resolve(local[expr.id], depth + 1)
            if expr.id in params:
                annotation = params[expr.id]
                if annotation is not None and "PayCommand" in ast.unparse(annotation):
                    return set(self.pay_commands)
                return None
        raise AssertionError(
            f"{self.path.name}:{expr.lineno}: cannot tell which method `{ast.unparse(expr)}` "
            "names; teach this test"
        )

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in CLN_CALL_ATTRIBUTES and node.args:
            self.methods |= self._resolve(node.args[0]) or set()
        self.generic_visit(node)


def cln_adapter_methods() -> set[str]:
    """Every JSON-RPC method the Core Lightning adapter modules call."""
    paths = sorted(LIGHTNING.glob("cln*.py"))
    trees = {path: ast.parse(path.read_text()) for path in paths}
    pay_commands = set().union(*(_pay_commands(tree) for tree in trees.values()))
    found: set[str] = set()
    for path, tree in trees.items():
        visitor = _ClnCalls(path, pay_commands)
        visitor.visit(tree)
        found |= visitor.methods
    return found


def doc_rune_methods() -> list[set[str]]:
    runes = []
    for words in doc_commands("lightning-cli"):
        if words[1:2] != ["createrune"]:
            continue
        (restrictions,) = [w.removeprefix("restrictions=") for w in words if "restrictions=" in w]
        alternatives = [alt for restriction in json.loads(restrictions) for alt in restriction]
        assert all(alt.startswith("method=") for alt in alternatives), alternatives
        runes.append({alt.removeprefix("method=") for alt in alternatives})
    return runes


def test_cln_adapter_calls_are_found() -> None:
    methods = cln_adapter_methods()
    # If these vanish the adapter's call style changed: teach cln_adapter_methods the new one.
    assert {"getinfo", "listpays", "xpay", "pay"} <= methods


def test_rune_grants_exactly_what_the_cln_adapter_calls() -> None:
    methods = cln_adapter_methods()
    runes = doc_rune_methods()
    assert runes, "real-nodes.md has no `lightning-cli createrune` command"
    for granted in runes:
        assert granted == methods, (
            f"missing from the rune: {sorted(methods - granted)}; "
            f"not called by the adapter: {sorted(granted - methods)}"
        )
    text = DOC.read_text()
    listed = text[text.index("calls these JSON-RPC methods:") : text.index("It never calls")]
    named = set(re.findall(r"`([a-z][a-z-]*)`", listed))
    assert named == methods, "the method list in section 5 differs from the adapter's calls"


def test_cln_schemas_know_every_method() -> None:
    schemas = REPO.parent / "shared" / "conformance" / "cln" / "schemas"
    if not schemas.is_dir():
        pytest.skip(f"no CLN schemas at {schemas}")
    # ``corridor-*`` methods are served by Corridor's own CLN plugin (ADR 0250), not lightningd.
    assert {
        m
        for m in cln_adapter_methods()
        if not m.startswith("corridor-") and not (schemas / f"{m}.json").exists()
    } == set()
