"""Prometheus metrics: the ``corridor_*`` series, who feeds them, and ``/metrics`` (ADR 0153)."""
