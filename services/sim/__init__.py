"""Deterministic simulated Lightning network that speaks the real LND and CLN node APIs."""
