"""Reconciliation of our log against the Lightning nodes' own records (issue 15): pure parts."""
