"""Recorded figures and parameters that live in files, not in code.

``<data set>/published.json``
    Figures a data set's peers published for it (:func:`published_figures`),
    shown in a report beside the ones recomputed here; the file states where
    they come from. ``recsys evaluate`` reads the one in the folder that holds
    the ``--peers`` folder.
``profiles/<name>.toml`` (:data:`PROFILES_DIR`)
    A configuration chosen for a data set (:func:`load_profile`), for example
    what ``recsys evaluate --tune`` chose on it. Its keys are settings: the
    environment variables without ``RECSYS_`` in lower case (``blend`` for
    ``RECSYS_BLEND``, ``n`` for ``RECSYS_N``); each value is read as that
    variable's text would be, so a profile gives exactly the
    :class:`~shared.config.Settings` those variables would, every setting it
    does not name at its default and the environment unread.

Example
-------
>>> profile = load_profile("yoochoose-tuned")
>>> profile.training.factors, profile.scoring.sources.window
(32, 20)
"""
from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from batch.training import TrainingParams
from shared.config import ConfigError, Settings, load_settings
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
    """``PROFILES_DIR / f"{name}.toml"`` as settings over the defaults.

    Raises
    ------
    ConfigError
        When a key is not a setting or a value does not parse or is out of
        range (the message names the key's environment variable).
    OSError, tomllib.TOMLDecodeError
        When the file cannot be read.
    """
    path = PROFILES_DIR / f"{name}.toml"
    with path.open("rb") as fh:
        values = tomllib.load(fh)
    env_of = {f.metadata["env"].removeprefix("RECSYS_").lower(): f.metadata["env"]
              for f in dataclasses.fields(Settings)}
    unknown = sorted(set(values) - set(env_of))
    if unknown:
        raise ConfigError(f"{path.name}: {', '.join(unknown)} are not settings")
    settings = load_settings({env_of[key]: _text(path, key, value)
                              for key, value in values.items()})
    return Profile(settings=settings, scoring=ScoringParams.from_settings(settings),
                   training=TrainingParams.from_settings(settings))


def _text(path: Path, key: str, value) -> str:
    """A TOML value as its environment variable's text (floats exactly, by repr)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return repr(value) if isinstance(value, float) else str(value)
    raise ConfigError(f"{path.name}: {key} = {value!r} is not a number, string or boolean")
