"""Every test in this folder talks to the real broker."""
import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.kafka)


# A worker script run as a subprocess by the tests, not a test module.
collect_ignore = ["faust_counter_app.py"]
