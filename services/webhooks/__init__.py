"""Signed webhooks for settlement events (issue 16, ADR 0175-0179)."""
