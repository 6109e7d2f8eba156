"""Save, verify and load model versions: ``<store>/<version>/`` with ``.npy`` files and meta.json.

A version is written under a hidden temporary name and renamed into place,
so a reader sees a whole version or none. ``meta.json`` records, besides the
training metadata, the dtype, shape and sha256 of every array file;
:func:`load_model` checks them all and raises :class:`ModelError` rather than
return a partial or corrupt model. Nothing is pickled.

Version names are UTC timestamps with microseconds, ``20261127T150102Z-123456``,
so that sorting names sorts versions by age.

Example
-------
>>> import tempfile
>>> store = tempfile.mkdtemp()
>>> latest_version(store) is None
True
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from shared.model import ARRAY_FIELDS, Model

#: Layout of a version directory; bumped when it changes incompatibly.
FORMAT = 1
META_FILE = "meta.json"
_VERSION = re.compile(r"^\d{8}T\d{6}Z-\d{6}$")
_TMP_PREFIX = ".tmp-"
#: Temporary directories older than this are left-overs of a crashed save.
_STALE_TMP_SECONDS = 24 * 3600
_NEIGHBOUR_PAIRS = (("similar_items", "similar_scores"), ("cooc_items", "cooc_scores"),
                    ("next_items", "next_scores"))
_PER_ITEM = ("item_factors", "popularity", "item_category") + sum(_NEIGHBOUR_PAIRS, ())


class ModelError(Exception):
    """A model version is missing, incomplete or corrupt; the message says which file and why."""


def new_version(now: datetime | None = None) -> str:
    """A version name for a model made at ``now`` (default: the current UTC time)."""
    now = now or datetime.now(timezone.utc)
    return now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ-%f")


def save_model(model: Model, store_dir: str | os.PathLike) -> Path:
    """Write ``model`` as ``store_dir/<model.version>/``, atomically.

    Parameters
    ----------
    model : Model
        ``model.meta`` is written to meta.json with ``version``, ``format``,
        ``created_at`` (when missing) and ``files`` (dtype, shape, sha256 per
        array) filled in.
    store_dir : path

    Returns
    -------
    Path
        The version directory.

    Raises
    ------
    ModelError
        When the version name is malformed or already in the store. On any
        failure nothing is left in the store.
    """
    if not _VERSION.match(model.version):
        raise ModelError(f"version {model.version!r} is not of the form 20261127T150102Z-123456")
    store = Path(store_dir)
    final = store / model.version
    if final.exists():
        raise ModelError(f"{final} already exists; a version is never overwritten")
    store.mkdir(parents=True, exist_ok=True)
    tmp = store / f"{_TMP_PREFIX}{model.version}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        files = {name: _write_array(tmp / f"{name}.npy", getattr(model, name))
                 for name in ARRAY_FIELDS}
        meta = {**model.meta, "format": FORMAT, "version": model.version, "files": files}
        meta.setdefault("created_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        _write_bytes(tmp / META_FILE, json.dumps(meta, indent=2, sort_keys=True).encode())
        _fsync_dir(tmp)
        os.rename(tmp, final)
        _fsync_dir(store)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_model(path: str | os.PathLike) -> Model:
    """Load and verify one version directory.

    Raises
    ------
    ModelError
        When meta.json or an array file is missing or unreadable, a checksum,
        dtype or shape differs from meta.json, or the arrays disagree on the
        number of items.
    """
    path = Path(path)
    meta = _read_meta(path)
    files = meta.get("files")
    if not isinstance(files, dict) or set(files) != set(ARRAY_FIELDS):
        raise ModelError(f"{path / META_FILE}: 'files' must list exactly {list(ARRAY_FIELDS)}")
    arrays = {name: _read_array(path / f"{name}.npy", files[name]) for name in ARRAY_FIELDS}
    _check_consistent(path, arrays)
    return Model(version=meta["version"], meta=meta, **arrays)


def versions(store_dir: str | os.PathLike) -> list[str]:
    """Every complete version in the store, oldest first."""
    store = Path(store_dir)
    if not store.is_dir():
        return []
    return sorted(p.name for p in store.iterdir() if p.is_dir() and _VERSION.match(p.name))


def latest_version(store_dir: str | os.PathLike) -> str | None:
    """The newest version's name, or None for an empty store."""
    found = versions(store_dir)
    return found[-1] if found else None


def load_latest(store_dir: str | os.PathLike) -> Model:
    """Load the newest version; :class:`ModelError` when the store has none or it is bad."""
    version = latest_version(store_dir)
    if version is None:
        raise ModelError(f"no model version in {store_dir}")
    return load_model(Path(store_dir) / version)


def prune(store_dir: str | os.PathLike, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` versions, and stale temporary directories.

    Returns
    -------
    list of str
        The versions deleted.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    store = Path(store_dir)
    old = versions(store)[:-keep]
    for version in old:
        shutil.rmtree(store / version)
    for tmp in store.glob(f"{_TMP_PREFIX}*"):
        if time.time() - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
            shutil.rmtree(tmp, ignore_errors=True)
    return old


def _write_array(path: Path, array: np.ndarray) -> dict:
    array = np.asarray(array)
    if array.dtype.kind in ("O", "S"):
        array = array.astype(str)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    data = buffer.getvalue()
    _write_bytes(path, data)
    return {"dtype": array.dtype.str, "shape": list(array.shape),
            "sha256": hashlib.sha256(data).hexdigest()}


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads((path / META_FILE).read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: no {META_FILE}; not a model version") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path / META_FILE} is unreadable: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{path / META_FILE}: format {meta.get('format')!r} is not {FORMAT}")
    if meta.get("version") != path.name:
        raise ModelError(f"{path / META_FILE}: version {meta.get('version')!r} "
                         f"does not match the directory name {path.name!r}")
    return meta


def _read_array(path: Path, expected: dict) -> np.ndarray:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path} is missing or unreadable: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected.get("sha256"):
        raise ModelError(f"{path}: checksum {digest} does not match meta.json "
                         f"{expected.get('sha256')}; the file is corrupt")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise ModelError(f"{path} is not a plain .npy array: {exc}") from None
    if array.dtype.str != expected.get("dtype") or list(array.shape) != expected.get("shape"):
        raise ModelError(f"{path}: {array.dtype.str} {list(array.shape)} differs from meta.json "
                         f"{expected.get('dtype')} {expected.get('shape')}")
    return array


def _check_consistent(path: Path, arrays: dict[str, np.ndarray]) -> None:
    n_items = len(arrays["item_ids"])
    for name in ("item_factors",) + sum(_NEIGHBOUR_PAIRS, ()):
        if arrays[name].ndim != 2:
            raise ModelError(f"{path}: {name} has {arrays[name].ndim} dimensions, not 2")
    for name in _PER_ITEM:
        if len(arrays[name]) != n_items:
            raise ModelError(f"{path}: {name} has {len(arrays[name])} rows, "
                             f"item_ids has {n_items}")
    for items, scores in _NEIGHBOUR_PAIRS:
        if arrays[items].shape != arrays[scores].shape:
            raise ModelError(f"{path}: {items} {arrays[items].shape} and "
                             f"{scores} {arrays[scores].shape} differ in shape")
        if arrays[items].size and not -1 <= arrays[items].min() <= arrays[items].max() < n_items:
            raise ModelError(f"{path}: {items} refers to items outside 0..{n_items - 1}")
    category = arrays["item_category"]
    if category.size and not -1 <= category.min() <= category.max() < len(arrays["categories"]):
        raise ModelError(f"{path}: item_category refers to categories that do not exist")
