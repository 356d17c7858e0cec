"""Payees' personal data, outside the event log (ADR 0270)."""
