"""Fixtures of the fault suite: the real broker and one trained model for every scenario."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from scenarios import Setup, train


def pytest_collection_modifyitems(items):
    for item in items:
        if "/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def setup(kafka_bootstrap, tmp_path_factory) -> Setup:
    model, path = train(tmp_path_factory.mktemp("fault-model"))
    return Setup(kafka_bootstrap, path, model, tmp_path_factory.mktemp("faults"))
