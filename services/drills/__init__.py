"""Operator drills against a running stack: ``corridor drill backup-restore|region-failover``."""
