"""The dev stack's nats-server: a port taken between choosing it and binding it (by another
process, often a client's ephemeral port) makes the first start choose again; a restart keeps
its ports, so clients reconnect where they were."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from services.devstack.nats import NatsServer
from tests.conftest import session_registry


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_a_first_start_whose_port_was_taken_chooses_another(
    tmp_path: Path, identity_home: Path
) -> None:
    with _listening() as taken:
        busy = taken.getsockname()[1]
        server = NatsServer(tmp_path / "nats", registry=session_registry(identity_home), port=busy)
        server.start()
        try:
            assert server.port != busy and server.started
        finally:
            server.stop()


def test_a_restart_keeps_its_port_and_says_when_it_is_taken(
    tmp_path: Path, identity_home: Path
) -> None:
    server = NatsServer(tmp_path / "nats", registry=session_registry(identity_home))
    server.start()
    port = server.port
    server.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(RuntimeError, match="address already in use"):
            server.start()
    assert server.port == port
    server.start()
    try:
        assert server.port == port
    finally:
        server.stop()
