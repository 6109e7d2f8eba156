"""Fixtures shared by every test: the real Kafka broker and unique topic names."""
from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path

import pytest

from shared.broker import LocalBroker
from shared.config import load_settings


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """``KAFKA_BOOTSTRAP`` when set, else the project's own broker on free ports for this run."""
    if "KAFKA_BOOTSTRAP" in os.environ:
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    home = Path(load_settings().kafka_home).expanduser()
    broker = LocalBroker(home=home, port=free_port(), controller_port=free_port())
    print(broker.start())
    yield broker.bootstrap
    broker.stop()
    shutil.rmtree(broker.state_dir, ignore_errors=True)


@pytest.fixture(name="free_port", scope="session")
def free_port_fixture():
    """The :func:`free_port` function, for tests that start servers of their own."""
    return free_port


@pytest.fixture
def topic_name(request) -> str:
    """A topic name no other test uses."""
    return f"test-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace("]", "")
