"""Corridor's Core Lightning plugin (run by lightningd, ADR 0250)."""

from pathlib import Path

CUSTOMMSG_PLUGIN = Path(__file__).with_name("corridor_custommsg.py")
HTLC_PLUGIN = Path(__file__).with_name("corridor_htlc.py")
