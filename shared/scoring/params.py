"""What decides a list besides the model and the shopper's state.

:class:`SourceWeights` (which candidate sources count, how much, and how fast
older anchors fade) and :class:`ScoringParams` (list length, blend,
normalisation, filters, state limits), with the names of the sources and
normalisations they accept. They are one thing: the worker builds
:class:`ScoringParams` from the settings and evaluation builds the same
object, so every knob that changes a ranking is validated here, once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from shared.config import ConfigError

#: Names of the candidate sources, in the order :class:`SourceWeights` lists them.
SOURCES: tuple[str, ...] = ("similar", "cooc", "next", "session")
#: Normalisations :func:`normalise` knows.
NORMALISATIONS: tuple[str, ...] = ("minmax", "rank")


@dataclass(frozen=True)
class SourceWeights:
    """How much each candidate source counts, and how fast older anchors fade.

    Attributes
    ----------
    similar, cooc, next, session : float
        Weight of each source in the similarity (0 switches a source off).
    similar_decay, cooc_decay, next_decay, session_decay : float
        An anchor ``k`` steps before the newest weighs ``decay ** k``; 0 keeps
        only the newest anchor (the query item).
    window : int
        Most recent session items used as anchors.
    pool : int
        Candidates with the highest similarity that the personal score
        re-ranks; 0 re-ranks them all.

    The default is the paper's: ALS-similar items of the query item only.
    """

    similar: float = 1.0
    cooc: float = 0.0
    next: float = 0.0
    session: float = 0.0
    similar_decay: float = 0.0
    cooc_decay: float = 0.0
    next_decay: float = 0.0
    session_decay: float = 0.0
    window: int = 10
    pool: int = 200

    def __post_init__(self):
        for name in SOURCES:
            if getattr(self, name) < 0 or not 0 <= getattr(self, f"{name}_decay") <= 1:
                raise ValueError(f"{name}: weights must be >= 0 and decays in [0, 1]")
        if self.window < 1 or self.pool < 0:
            raise ValueError("window must be >= 1 and pool >= 0")
        if not any(getattr(self, name) > 0 for name in SOURCES):
            raise ValueError(f"at least one candidate source ({', '.join(SOURCES)}) "
                             f"needs a weight above 0")

    @cached_property
    def active(self) -> tuple[tuple[int, float, float], ...]:
        """(source index, weight, decay) of each source with a weight above 0."""
        return tuple((s, float(getattr(self, name)), float(getattr(self, f"{name}_decay")))
                     for s, name in enumerate(SOURCES) if getattr(self, name) > 0)

    @cached_property
    def decays(self) -> bool:
        """Whether any active source weighs anchors before the newest."""
        return any(decay > 0 for _, _, decay in self.active)

    @cached_property
    def active_weights(self) -> np.ndarray:
        """The active sources' weights, in the order of :attr:`active`."""
        return np.array([w for _, w, _ in self.active], dtype=np.float64)

    def as_dict(self) -> dict:
        """Plain values, for reports and meta.json."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class ScoringParams:
    """Everything that decides a list besides the model and the shopper's state.

    The worker builds it from the settings (:meth:`from_settings`); evaluation
    builds the same object, so both rank the same way.

    Attributes
    ----------
    n : int
        Length of a list.
    blend : float
        Weight of the personal score, in [0, 1].
    sources : SourceWeights
    normalisation : {"minmax", "rank"}
    exclude_query : bool
        Leave out the item being looked at.
    exclude_session : bool
        Leave out every item seen in the session.
    filter_bought, filter_shown : bool
    history_max : int
        Items kept per user (and bought items remembered).
    decay_half_life_s : float
        Half-life of a user's past confidence; 0 = no decay.
    session_max : int
        Items kept per session (and shown items remembered).
    """

    n: int = 20
    blend: float = 0.5
    sources: SourceWeights = field(default_factory=SourceWeights)
    normalisation: str = "minmax"
    exclude_query: bool = True
    exclude_session: bool = False
    filter_bought: bool = True
    filter_shown: bool = False
    history_max: int = 100
    decay_half_life_s: float = 0.0
    session_max: int = 50

    def __post_init__(self):
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}")
        if not 0.0 <= self.blend <= 1.0:
            raise ValueError("blend must be in [0, 1]")

    @classmethod
    def from_settings(cls, settings, **overrides) -> ScoringParams:
        """Take the scoring settings from a :class:`shared.config.Settings`.

        Raises :class:`shared.config.ConfigError` naming the ``RECSYS_SOURCE_*``
        settings when they leave no candidate source.
        """
        try:
            sources = SourceWeights(**{name: getattr(settings, f"source_{name}")
                                       for name in SourceWeights.__dataclass_fields__})
        except ValueError as exc:
            raise ConfigError(f"RECSYS_SOURCE_*: {exc}") from exc
        values = dict(
            n=settings.n_recommendations, blend=settings.blend, sources=sources,
            normalisation=settings.normalisation, exclude_query=settings.exclude_query,
            exclude_session=settings.exclude_session,
            filter_bought=settings.filter_bought, filter_shown=settings.filter_shown,
            history_max=settings.history_max, decay_half_life_s=settings.decay_half_life_s,
            session_max=settings.session_max)
        values.update(overrides)
        return cls(**values)

    def as_dict(self) -> dict:
        """Plain values, for reports and meta.json."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["sources"] = self.sources.as_dict()
        return out
