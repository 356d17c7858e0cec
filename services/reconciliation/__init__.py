"""The region reconciler: our log against each node's own payment list (issue 15, ADR 0151)."""
