"""Fixtures shared by every test: the real Kafka broker and unique topic names."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from shared.broker import ephemeral_broker, free_port
from shared.config import load_settings


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """``KAFKA_BOOTSTRAP`` when set, else the project's own broker on free ports for this run."""
    if "KAFKA_BOOTSTRAP" in os.environ:
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    with ephemeral_broker(Path(load_settings().kafka_home).expanduser()) as broker:
        yield broker.bootstrap


@pytest.fixture(name="free_port", scope="session")
def free_port_fixture():
    """The :func:`free_port` function, for tests that start servers of their own."""
    return free_port


@pytest.fixture
def topic_name(request) -> str:
    """A topic name no other test uses."""
    return f"test-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace("]", "")
