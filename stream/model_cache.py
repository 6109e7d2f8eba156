"""The model a worker scores with, swapped atomically when a new version is announced.

The worker holds one :class:`ModelCache`. Scoring reads ``cache.model`` once
per event, so a swap takes effect between two events: none is scored half
with the old model and half with the new one.

A version can be refused but never crashes the worker: whatever goes wrong
while locating, loading, verifying or preparing it, :meth:`ModelCache.offer`
logs it, records a one-line reason in :attr:`ModelCache.refused` and keeps
the current model serving.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from shared.model import Model
from shared.model_store import ModelError, created_at, creation_time, load_model, version_time, versions
from shared.scoring import prepare
from shared.signals import SignalWeights

log = logging.getLogger(__name__)

#: An absolute path inside a message; replaced by its last component in refusal texts.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s'\"/]+/)*([^\s'\"/]+)/?")


class ModelCache:
    """The current model and what happened to the versions offered to it.

    Versions are ordered as :func:`shared.model_store.versions` orders them:
    by creation time, the name breaking ties.

    Parameters
    ----------
    store_dir : str or Path
        The model store. A version is always read from its entry here,
        ``<store>/<version>``; the entry may be a symlink, and where it
        points is the operator's choice.
    """

    def __init__(self, store_dir: str | Path):
        self.store_dir = Path(store_dir)
        self.model: Model | None = None
        #: The signal weights and alpha the current model was trained with.
        self.weights: SignalWeights | None = None
        #: Version -> why it was refused, naming files relative to the store.
        self.refused: dict[str, str] = {}
        self.swaps = 0
        self._key = None  # (creation time, version) of the current model

    @property
    def version(self) -> str | None:
        return self.model.version if self.model is not None else None

    def load_latest(self) -> bool:
        """Load the newest version in the store that verifies; True when a model is now served.

        A newer version that fails verification is refused (see :meth:`offer`)
        and the next older one is tried, so a broken newest model cannot leave
        a restarted worker without one. An unreadable store leaves the worker
        as it was.
        """
        try:
            found = versions(self.store_dir)
        except OSError as exc:
            log.error("cannot list the model store: %s", exc)
            found = []
        for version in reversed(found):
            if self.offer(version):
                break
        return self.model is not None

    def offer(self, version: str, path: str | Path | None = None) -> bool:
        """Swap in ``version`` if it is newer than the current one and verifies; never raises.

        ``path`` is where the announcement says the version is. It must be
        the store's entry for ``version``: either its parent directory, with
        symlinks followed, is the store and its name is ``version``, or it
        resolves to the same directory as the entry (an announcer resolves a
        symlinked entry to its target). A path that exists but is neither is
        refused ("outside the model store"); one that does not exist on this
        machine (the store mounted elsewhere there) is passed over, and the
        entry is read.

        Returns
        -------
        bool
            True when the version is now served. An older or equal version is
            ignored (False, or True for the current one); a bad one is logged,
            remembered in :attr:`refused` with a reason free of absolute paths,
            and the current model stays.
        """
        try:
            return version == self.version or self._swap_in(version, path)
        except Exception as exc:
            self._refuse(version, path, exc)
            return False

    def _swap_in(self, version: str, path: str | Path | None) -> bool:
        entry = self._entry(version, path)
        if not self._is_newer(creation_time(entry), version):
            return False
        model = load_model(entry)
        key_time = created_at(model.meta)
        prepare(model)  # before the swap, off the scoring path
        weights = SignalWeights.from_meta(model.meta)
        if not self._is_newer(key_time, version):
            return False
        self.model, self.weights, self._key = model, weights, (key_time, version)
        self.swaps += 1
        log.warning("now serving model %s (%d items)", version, model.n_items)
        return True

    def _is_newer(self, when, version: str) -> bool:
        return self._key is None or (when, version) > self._key

    def _entry(self, version: str, announced: str | Path | None) -> Path:
        """The store's entry for ``version``, once the announced path is known to name it."""
        version_time(version)  # a valid name has no separator: the entry is in the store
        entry = self.store_dir / version
        if not announced or not os.path.lexists(announced):
            return entry
        announced = Path(announced)
        names_entry = (announced.name == version
                       and announced.parent.resolve() == self.store_dir.resolve())
        if not names_entry and announced.resolve() != entry.resolve():
            raise ModelError(f"{version}: the announced path is outside the model store "
                             f"(or not this version's entry in it)")
        return entry

    def _refuse(self, version, path, exc: Exception) -> None:
        """Record the reason; the log, for the operator, also has the announced path."""
        reason = self._reason(version, exc)
        self.refused[str(version)] = reason
        log.error("refused model %s (announced at %s), still serving %s: %s", version, path,
                  self.version, reason, exc_info=not isinstance(exc, ModelError))

    def _reason(self, version, exc: Exception) -> str:
        """One line naming the version and, for files, their path relative to the store."""
        try:
            text = str(exc) if isinstance(exc, ModelError) else (
                f"{version}: {type(exc).__name__} while loading or preparing: {exc}")
        except Exception:
            text = f"{version}: {type(exc).__name__} while loading or preparing"
        for store in self._store_spellings():
            text = text.replace(store.rstrip(os.sep) + os.sep, "")
        return " ".join(_ABSOLUTE_PATH.sub(r"\1", text).split())

    def _store_spellings(self) -> set[str]:
        """The store's absolute path, as given and with symlinks followed when that works."""
        spellings = {str(self.store_dir.absolute())}
        try:
            spellings.add(str(self.store_dir.resolve()))
        except (OSError, RuntimeError):  # a symlink loop
            pass
        return spellings
