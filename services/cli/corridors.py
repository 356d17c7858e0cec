"""``corridor corridors``: the corridor table in force, as the running engine routes it."""

from __future__ import annotations

import argparse

from services.cli import exit_codes, output
from services.cli.engine import EngineClient


async def run(args: argparse.Namespace) -> int:
    async with EngineClient.open(args.state_dir) as engine:
        view = await engine.corridors_view()
    if args.json:
        output.print_json(view)
        return exit_codes.OK
    rows = [
        [row.get("corridor"), c.get("rank"), c.get("region"), c.get("node"),
         "yes" if c.get("keysend") else "no"]
        for row in view.get("corridors", [])
        for c in row.get("candidates", [])
    ]  # fmt: skip
    if not rows:
        print("no corridors: the engine routes no payment")
        return exit_codes.OK
    output.print_table(["CORRIDOR", "RANK", "REGION", "NODE", "KEYSEND"], rows)
    return exit_codes.OK
