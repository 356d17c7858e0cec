"""The command blocks of ``runbooks/*.md``: which run here, and the ``corridor`` commands in all.

A block fenced ```` ```sh runbook-run ```` (optionally ``exit=N``) runs against the local stack;
a plain ```` ```sh ```` block needs real infrastructure and is only parsed (runbooks/README.md).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Final

RUNBOOKS: Final = Path(__file__).resolve().parents[1] / "runbooks"
RUN_TAG: Final = "runbook-run"
_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<info>.*)$")
_SHELL_PUNCTUATION = re.compile(r"^[();<>|&]+$")
_WHOLE_VARIABLE = re.compile(r"^\$(\w+|\{\w+\}|\(.*\))$")
_ASSIGNMENT = re.compile(r"^\w+=")


@dataclass(frozen=True)
class Block:
    runbook: str
    line: int  # of the opening fence, 1-based
    language: str
    runnable: bool
    expected_exit: int
    script: str

    @property
    def name(self) -> str:
        return f"{self.runbook}:{self.line}"


def blocks(directory: Path = RUNBOOKS) -> list[Block]:
    """Every fenced block of every runbook, in file and line order."""
    found = []
    for path in sorted(directory.glob("*.md")):
        lines = path.read_text().splitlines()
        index = 0
        while index < len(lines):
            opening = _FENCE.match(lines[index])
            if opening is None:
                index += 1
                continue
            words = opening["info"].split()
            indent = len(opening["indent"])
            body, index = [], index + 1
            while index < len(lines) and not _FENCE.match(lines[index]):
                body.append(lines[index][indent:])
                index += 1
            start_line = index - len(body)
            index += 1  # the closing fence
            options = dict(w.split("=", 1) for w in words[1:] if "=" in w)
            unknown = set(options) - {"exit"}
            assert not unknown, f"{path.name}:{start_line}: unknown block option {unknown}"
            found.append(
                Block(
                    runbook=path.name,
                    line=start_line,
                    language=words[0] if words else "",
                    runnable=RUN_TAG in words[1:],
                    expected_exit=int(options.get("exit", "0")),
                    script="\n".join(body) + "\n",
                )
            )
    return found


def corridor_commands(script: str) -> list[list[str]]:
    """The argument lists of every ``corridor`` command in a shell script: at a command's
    position (the start, after ``|``, ``;``, ``&&``, ``(``, or after ``VAR=value``
    assignments). An argument that is only a shell variable or ``$(...)`` becomes ``1``, which
    any option takes, so ``--amount-msat "$N"`` parses as the real value would."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens = list(lexer)
        at_command = True
        for index, token in enumerate(tokens):
            if _SHELL_PUNCTUATION.match(token):
                at_command = True
                continue
            if at_command and _ASSIGNMENT.match(token):
                continue
            if at_command and token == "corridor":
                commands.append(_arguments(tokens[index + 1 :]))
            at_command = False
    return commands


def _arguments(tokens: list[str]) -> list[str]:
    argv = []
    for token in tokens:
        if _SHELL_PUNCTUATION.match(token):
            if token.startswith((">", "<")) and argv and argv[-1].isdigit():
                argv.pop()  # the "2" of "2>"
            break
        argv.append("1" if _WHOLE_VARIABLE.match(token) else token)
    return argv
