"""The lists the worker sends: one message per event, and the latest per user for the views."""
from __future__ import annotations

from collections import OrderedDict

from shared.events import Event
from shared.messages import recommendation_message
from shared.scoring import Recommendation


def recommendation_for(event: Event, rec: Recommendation | None, model, version) -> bytes:
    """The ``recommendations`` message for ``event``; an empty ``no_model`` list before any model."""
    items = [] if rec is None else list(zip(rec.item_ids(model), rec.scores.tolist()))
    return recommendation_message(
        user_id=event.user_id, session_id=event.session_id, event_id=event.event_id,
        query_item_id=event.item_id, items=items,
        strategy="no_model" if rec is None else rec.strategy, model_version=version)


class LatestLists:
    """The latest list sent per user (message bytes), the most recent ``size`` users.

    >>> latest = LatestLists(2)
    >>> latest.put("a", b"1"); latest.put("b", b"2"); latest.put("a", b"3"); latest.put("c", b"4")
    >>> latest.get("a"), latest.get("b"), latest.get("c")
    (b'3', None, b'4')
    """

    def __init__(self, size: int):
        self.size = size
        self._lists: OrderedDict[str, bytes] = OrderedDict()

    def put(self, user_id: str, value: bytes) -> None:
        """Remember ``value`` as ``user_id``'s latest list."""
        lists = self._lists
        lists[user_id] = value
        lists.move_to_end(user_id)
        if len(lists) > self.size:
            lists.popitem(last=False)

    def get(self, user_id: str) -> bytes | None:
        """The latest list sent for ``user_id``, or None."""
        return self._lists.get(user_id)
