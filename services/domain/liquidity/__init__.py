"""Liquidity targets, breaches and the outflow forecast (ADR 0241): pure, no I/O."""
