"""Webhook endpoints as an aggregate: pure decide and evolve (ADR 0175)."""
