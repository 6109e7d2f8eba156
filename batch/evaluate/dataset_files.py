"""Recorded figures and parameters that live in files, not in code.

``<data set>/published.json``
    Figures a data set's peers published for it (:func:`published_figures`),
    shown in a report beside the ones recomputed here; the file states where
    they come from. ``recsys evaluate`` reads the one in the folder that holds
    the ``--peers`` folder.
``profiles/<name>.toml`` (:data:`PROFILES_DIR`)
    A configuration chosen for a data set (:func:`load_profile`), for example
    what ``recsys evaluate --tune`` chose on it. It is a configuration file
    (:func:`shared.config.read_config_file`): its keys are the environment
    variables without ``RECSYS_`` in lower case (``blend`` for
    ``RECSYS_BLEND``, ``n`` for ``RECSYS_N``), and every setting it does not
    name keeps its default.

Example
-------
>>> profile = load_profile("yoochoose-tuned")
>>> profile.training.factors, profile.scoring.sources.window
(32, 20)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from batch.training import TrainingParams
from shared.config import Settings, load_settings
from shared.scoring import ScoringParams

#: The profiles the repository carries (``<repo>/profiles``), or ``$RECSYS_PROFILES_DIR``.
PROFILES_DIR = Path(os.environ.get(
    "RECSYS_PROFILES_DIR", Path(__file__).resolve().parents[2] / "profiles"))
#: Name of a data set's published figures, in the data set's folder.
PUBLISHED_FILE = "published.json"


@dataclass(frozen=True)
class Published:
    """Figures published for a data set by others, with where they come from.

    Attributes
    ----------
    source : str
        Who computed them, how, and where they were published.
    positions : int
        Test positions each figure is over.
    methods : dict
        Method name -> metric name (``hr@20``, ...) -> value, in the file's order.
    """

    source: str
    positions: int
    methods: dict[str, dict[str, float]]


def published_figures(data_dir: str | Path) -> Published | None:
    """The :data:`PUBLISHED_FILE` in ``data_dir``; None when it has none."""
    path = Path(data_dir) / PUBLISHED_FILE
    if not path.is_file():
        return None
    recorded = json.loads(path.read_text())
    return Published(source=recorded["source"], positions=recorded["positions"],
                     methods=recorded["methods"])


@dataclass(frozen=True)
class Profile:
    """A profile's settings and the scoring and training parameters they give."""

    settings: Settings
    scoring: ScoringParams
    training: TrainingParams


def load_profile(name: str) -> Profile:
    """``PROFILES_DIR / f"{name}.toml"`` as a configuration file over the defaults.

    The environment is not read: a profile gives the same parameters wherever
    it is loaded.

    Raises
    ------
    ConfigError
        When the file cannot be read, a key is not a setting, or a value has
        the wrong type or is out of range.
    """
    settings = load_settings({}, config_file=PROFILES_DIR / f"{name}.toml")
    return Profile(settings=settings, scoring=ScoringParams.from_settings(settings),
                   training=TrainingParams.from_settings(settings))
