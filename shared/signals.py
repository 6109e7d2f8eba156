"""The one place that turns events into preference r_ui and confidence c_ui = 1 + alpha * r_ui.

Weights come from configuration (:class:`SignalWeights.from_settings`); the
same object is used by the batch matrix, the stream worker and evaluation.

Example
-------
>>> import numpy as np
>>> w = SignalWeights(view=0.1, dwell=0.15, dwell_cap_ms=60000, click=0.25,
...                   add_to_cart=0.5, buy=1.0, alpha=15.0)
>>> [round(float(r), 3) for r in w.preference(np.array([1, 3, 0]), np.array([-1, -1, 30000]))]
[0.25, 1.0, 0.175]
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from shared.events import EVENT_TYPE_CODES


@dataclass(frozen=True)
class SignalWeights:
    """Preference weight per event type, the dwell bonus of views, and alpha."""

    view: float
    dwell: float
    dwell_cap_ms: int
    click: float
    add_to_cart: float
    buy: float
    alpha: float

    @classmethod
    def from_settings(cls, settings) -> SignalWeights:
        """Take the weights from a :class:`shared.config.Settings`."""
        return cls(view=settings.weight_view, dwell=settings.weight_dwell,
                   dwell_cap_ms=settings.dwell_cap_ms, click=settings.weight_click,
                   add_to_cart=settings.weight_add_to_cart, buy=settings.weight_buy,
                   alpha=settings.alpha)

    @classmethod
    def from_meta(cls, meta: dict) -> SignalWeights | None:
        """The weights a model was trained with (its ``meta.json``), or None if not recorded."""
        recorded = meta.get("params", {}).get("signal_weights")
        return cls(**recorded) if recorded else None

    def as_dict(self) -> dict:
        """Plain values, for a model's ``meta.json``."""
        return asdict(self)

    @cached_property
    def _base(self) -> np.ndarray:
        return self.by_type_code()

    def by_type_code(self) -> np.ndarray:
        """Base weight indexed by event type code."""
        table = np.zeros(len(EVENT_TYPE_CODES), dtype=np.float32)
        for name, code in EVENT_TYPE_CODES.items():
            table[code] = getattr(self, name)
        return table

    def preference(self, type_codes: np.ndarray, dwell_ms: np.ndarray) -> np.ndarray:
        """r for each event; ``dwell_ms`` < 0 means unknown (no dwell bonus).

        Views earn ``dwell * min(dwell_ms, dwell_cap_ms) / dwell_cap_ms`` on top
        of their base weight.
        """
        type_codes = np.asarray(type_codes)
        r = self._base[type_codes]
        dwell = np.clip(np.asarray(dwell_ms, dtype=np.float32), 0, self.dwell_cap_ms)
        is_view = type_codes == EVENT_TYPE_CODES["view"]
        return (r + np.where(is_view, self.dwell * dwell / self.dwell_cap_ms, 0.0)).astype(np.float32)

    def preference_one(self, type_code: int, dwell_ms: int | None) -> float:
        """r of a single event (the stream worker's per-event path)."""
        r = float(self._base[type_code])
        if type_code == EVENT_TYPE_CODES["view"] and dwell_ms is not None and dwell_ms > 0:
            r += self.dwell * min(dwell_ms, self.dwell_cap_ms) / self.dwell_cap_ms
        return r

    def confidence(self, preference: np.ndarray | float):
        """c = 1 + alpha * r."""
        return 1.0 + self.alpha * preference
