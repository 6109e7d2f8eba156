"""The model a worker scores with, swapped atomically when a new version is announced.

The worker holds one :class:`ModelCache`. Scoring reads ``cache.model`` once
per event, so a swap takes effect between two events: none is scored half
with the old model and half with the new one. A version that fails
verification is refused and the current model keeps serving.
"""
from __future__ import annotations

import logging
from pathlib import Path

from shared.model import Model
from shared.model_store import ModelError, load_model, versions
from shared.scoring import prepare
from shared.signals import SignalWeights

log = logging.getLogger(__name__)


class ModelCache:
    """The current model and what happened to the versions offered to it.

    Parameters
    ----------
    store_dir : str or Path
        The model store; versions are looked up here by name.
    """

    def __init__(self, store_dir: str | Path):
        self.store_dir = Path(store_dir)
        self.model: Model | None = None
        #: The signal weights and alpha the current model was trained with.
        self.weights: SignalWeights | None = None
        self.refused: dict[str, str] = {}
        self.swaps = 0

    @property
    def version(self) -> str | None:
        return self.model.version if self.model is not None else None

    def load_latest(self) -> bool:
        """Load the newest version in the store that verifies; True when a model is now served.

        A newer version that fails verification is refused (see :meth:`offer`)
        and the next older one is tried, so a broken newest model cannot leave
        a restarted worker without one.
        """
        for version in reversed(versions(self.store_dir)):
            if self.offer(version, self.store_dir / version):
                break
        return self.model is not None

    def offer(self, version: str, path: str | Path | None = None) -> bool:
        """Load ``version`` (from ``path``, default the store) and swap it in if it verifies.

        Returns True when the version is now served. An older or equal version
        than the current one is ignored; a bad one is logged, remembered in
        :attr:`refused`, and the current model stays.
        """
        if self.version is not None and version <= self.version:
            return version == self.version
        try:
            model = load_model(self._locate(version, path))
        except ModelError as exc:
            self.refused[version] = str(exc)
            log.error("refused model %s, still serving %s: %s", version, self.version, exc)
            return False
        prepare(model)  # before the swap, off the scoring path
        self.model, self.weights = model, SignalWeights.from_meta(model.meta)
        self.swaps += 1
        log.warning("now serving model %s (%d items)", version, model.n_items)
        return True

    def _locate(self, version: str, path: str | Path | None) -> Path:
        """The announced path when this worker can see it, else the version in its own store."""
        if path and Path(path).is_dir():
            return Path(path)
        return self.store_dir / version
