"""``recsys`` with faults injected into the worker's agent, for the fault suite.

``FAULT_LIST_IDS``: comma-separated event ids whose recommendation message
fails to be built (an exception after scoring). ``FAULT_WRITE_ID``: an event
id whose row write (that of its micro-batch) fails once, the first time any worker reaches it
(``FAULT_WRITE_MARKER`` is the file that remembers it happened), as a full
disk or a lost store would.
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import stream.agents as agents
from recsys.cli import main


class InjectedFault(RuntimeError):
    """The exception the fault suite injects."""


_LIST_IDS = set(filter(None, os.environ.get("FAULT_LIST_IDS", "").split(",")))
_WRITE_ID = os.environ.get("FAULT_WRITE_ID")
_WRITE_MARKER = Path(os.environ.get("FAULT_WRITE_MARKER", "/nonexistent/marker"))
_recommendation_for = agents.recommendation_for
_set_many = agents.user_rows.set_many
_applied: set = set()  # event ids applied since the last row write


def recommendation_for(event, rec, model, version):
    if event.event_id in _LIST_IDS:
        raise InjectedFault(f"injected after scoring event {event.event_id}")
    return _recommendation_for(event, rec, model, version)


def _next_rows(faust_event, event, staged=None, _upstream=agents._next_rows):
    _applied.add(event.event_id)
    return _upstream(faust_event, event, staged)


def set_rows(entries):
    """The write of a micro-batch's rows; fails once when it holds the row of ``FAULT_WRITE_ID``."""
    applied = set(_applied)
    _applied.clear()
    if _WRITE_ID in applied and not _WRITE_MARKER.exists():
        _WRITE_MARKER.write_text("failed once\n")
        raise InjectedFault(f"injected row write failure at event {_WRITE_ID}")
    return _set_many(entries)


agents.recommendation_for = recommendation_for
agents._next_rows = _next_rows
agents.user_rows.set_many = set_rows

if __name__ == "__main__":
    sys.exit(main())
