"""Start and stop the real servers Corridor needs (nats-server with JetStream, PostgreSQL)."""

from services.devstack.stack import DevStack

__all__ = ["DevStack"]
