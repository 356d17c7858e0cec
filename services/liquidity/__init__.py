"""Liquidity at the edges: targets from settings, the snapshot feed, the metrics (ADR 0240-0241)."""
