"""Save, verify and load model versions: ``<store>/<version>/`` with ``.npy`` files and meta.json.

One module, past 500 lines, because saving, verifying and loading are one
format: each check that loading makes is the counterpart of a step of saving.

A version is written under a hidden temporary name and renamed into place,
so a reader sees a whole version or none. ``meta.json`` records, besides the
training metadata, the dtype, shape and sha256 of every array file. Nothing
is pickled.

:func:`load_model` raises :class:`ModelError` rather than return a model a
worker could not score with: besides the checksums (which only catch
accidents, as whoever writes a file can write its checksum too) it checks
every array itself (its layout in :data:`shared.model.ARRAY_LAYOUT`, finite
floats, the exact length of the ``.npy`` file, distinct ids, indices in
range) and the parameters scoring reads from meta.json. Its messages name
the file as ``<version>/<file>``, relative to the store, never an absolute
path.

Version names are UTC timestamps with microseconds, ``20261127T150102Z-123456``,
and must be real times. Versions are ordered by their creation time,
``created_at`` in meta.json (the name's time when meta.json is unreadable or
lacks it), the name breaking ties; ``created_at`` is written to the second,
so versions of one second are ordered by name. A name alone, however far
ahead, thus cannot rank a version above one made in a later second. A version
whose creation time lies more than :data:`CLOCK_SKEW` ahead of now is left
out of :func:`versions` and refused by :func:`load_model`, so that a bogus
future ``created_at`` cannot either.

Example
-------
>>> import tempfile
>>> store = tempfile.mkdtemp()
>>> latest_version(store) is None
True
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import re
import secrets
import shutil
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from shared.model import ARRAY_FIELDS, ARRAY_LAYOUT, Model
from shared.signals import SignalWeights

log = logging.getLogger(__name__)

#: Layout of a version directory; bumped when it changes incompatibly.
FORMAT = 1
META_FILE = "meta.json"
#: How far ahead of this machine's clock a version's creation time may be.
CLOCK_SKEW = timedelta(days=1)
_VERSION = re.compile(r"^\d{8}T\d{6}Z-\d{6}$")
_VERSION_TIME = "%Y%m%dT%H%M%SZ-%f"
_TMP_PREFIX = ".tmp-"
#: In a temporary directory, the file its save holds an exclusive flock on.
_OWNER_FILE = ".owner"
#: A temporary directory without an owner file older than this is a left-over.
_UNOWNED_TMP_SECONDS = 3600
_NEIGHBOUR_PAIRS = (("similar_items", "similar_scores"), ("cooc_items", "cooc_scores"),
                    ("next_items", "next_scores"))
_PER_ITEM = ("item_factors", "popularity", "item_category") + sum(_NEIGHBOUR_PAIRS, ())
_KIND_NAMES = {"U": "text", "i": "signed integer", "f": "float32 or float64"}


class ModelError(Exception):
    """A model version is missing, incomplete, corrupt or unusable; the message says which
    file (relative to the store) and why."""


def new_version(now: datetime | None = None) -> str:
    """A version name for a model made at ``now`` (default: the current UTC time)."""
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).strftime(_VERSION_TIME)


def version_time(version: object) -> datetime:
    """The UTC time a version name gives.

    Raises
    ------
    ModelError
        When ``version`` is not of the form 20261127T150102Z-123456 or not a
        real time (month 13, February 30, ...). A valid name has no path
        separator, so ``store / version`` stays in the store.
    """
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ModelError(f"version {version!r} is not of the form 20261127T150102Z-123456")
    try:
        return datetime.strptime(version, _VERSION_TIME).replace(tzinfo=UTC)
    except ValueError:
        raise ModelError(f"version {version!r} is not a real UTC time") from None


def created_at(meta: dict) -> datetime:
    """When the version ``meta`` describes was made: its ``created_at``, else its name's time.

    Raises
    ------
    ModelError
        When the version name is invalid, ``created_at`` is not an ISO time
        with a time zone, or the time lies more than :data:`CLOCK_SKEW` ahead.
    """
    version = meta.get("version")
    named = version_time(version)  # the name is checked either way
    if "created_at" not in meta:
        return _not_ahead(version, named)
    text = meta["created_at"]
    try:
        stamp = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        stamp = None
    if stamp is None or stamp.tzinfo is None:
        raise ModelError(f"{version}/{META_FILE}: created_at {text!r} is not an ISO time "
                         f"with a time zone")
    return _not_ahead(version, stamp)


def creation_time(path: str | os.PathLike) -> datetime:
    """The creation time of the version directory ``path``, the key versions are ordered by.

    ``created_at`` from its meta.json; the time its name gives when meta.json
    is missing, unreadable or has none (:func:`load_model` refuses such a
    version with the reason; it is ordered by its name meanwhile).

    Raises
    ------
    ModelError
        As :func:`created_at`.
    """
    path = Path(path)
    try:
        meta = json.loads((path / META_FILE).read_bytes())
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        meta = {}
    return created_at({**meta, "version": path.name})


def save_model(model: Model, store_dir: str | os.PathLike) -> Path:
    """Write ``model`` as ``store_dir/<model.version>/``, atomically.

    Before writing, temporary directories of saves that were killed are
    removed (see :func:`remove_abandoned_temps`).

    Parameters
    ----------
    model : Model
        ``model.meta`` is written to meta.json with ``version``, ``format``,
        ``created_at`` (when missing: the time the version name gives) and
        ``files`` (dtype, shape, sha256 per array) filled in.
    store_dir : path

    Returns
    -------
    Path
        The version directory.

    Raises
    ------
    ModelError
        When the version name is malformed or not a real time, when the name's
        time or ``created_at`` lies more than :data:`CLOCK_SKEW` ahead, or when
        the version is already in the store. On any failure nothing of this
        save is left in the store.
    """
    meta = {**model.meta, "format": FORMAT, "version": model.version}
    meta.setdefault("created_at", version_time(model.version).isoformat(timespec="seconds"))
    _not_ahead(model.version, version_time(model.version))
    created_at(meta)
    store = Path(store_dir)
    final = store / model.version
    if final.exists():
        raise ModelError(f"{final} already exists; a version is never overwritten")
    store.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temps(store)
    with _owned_temp_dir(store, model.version) as tmp:
        meta["files"] = {name: _write_array(tmp / f"{name}.npy", getattr(model, name))
                         for name in ARRAY_FIELDS}
        _write_bytes(tmp / META_FILE, json.dumps(meta, indent=2, sort_keys=True).encode())
        _publish(tmp, final)
    return final


def load_model(path: str | os.PathLike) -> Model:
    """Load and verify one version directory.

    Raises
    ------
    ModelError
        When meta.json or an array file is missing, unreadable or truncated; a
        checksum, dtype or shape differs from meta.json; an array is not of the
        layout :data:`shared.model.ARRAY_LAYOUT` gives or holds NaN or
        infinity; the arrays disagree on the number of items; an item id
        repeats; a neighbour or category index is out of range; the training
        parameters scoring reads are not finite numbers; or the creation time
        is invalid or ahead (:func:`created_at`).
    """
    path = Path(path)
    version = path.name
    meta = _read_meta(path)
    files = meta.get("files")
    if not isinstance(files, dict) or set(files) != set(ARRAY_FIELDS):
        raise ModelError(f"{version}/{META_FILE}: 'files' must list exactly {list(ARRAY_FIELDS)}")
    created_at(meta)
    _check_params(version, meta)
    arrays = {name: _read_array(version, path, name, files[name]) for name in ARRAY_FIELDS}
    _check_consistent(version, arrays)
    return Model(version=meta["version"], meta=meta, **arrays)


def versions(store_dir: str | os.PathLike) -> list[str]:
    """Every version in the store, oldest first by :func:`creation_time`, the name breaking ties.

    ``stream.model_cache.ModelCache`` orders offered versions the same way.
    An entry is a directory, or a symlink to one, named like a version.
    Entries whose name is not a real time or whose creation time lies ahead
    are left out, and logged.
    """
    store = Path(store_dir)
    if not store.is_dir():
        return []
    found = []
    for entry in store.iterdir():
        if not _VERSION.match(entry.name) or not entry.is_dir():
            continue
        try:
            found.append((creation_time(entry), entry.name))
        except ModelError as exc:
            log.warning("ignoring model version %s: %s", entry.name, exc)
    return [name for _, name in sorted(found)]


def latest_version(store_dir: str | os.PathLike) -> str | None:
    """The newest version's name (the last of :func:`versions`), or None for an empty store."""
    found = versions(store_dir)
    return found[-1] if found else None


def load_latest(store_dir: str | os.PathLike) -> Model:
    """Load the newest version; :class:`ModelError` when the store has none or it is bad."""
    version = latest_version(store_dir)
    if version is None:
        raise ModelError(f"no model version in {store_dir}")
    return load_model(Path(store_dir) / version)


def prune(store_dir: str | os.PathLike, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` of :func:`versions`, and abandoned temporary directories.

    A version that is a symlink loses the link only; what it points to is
    left alone. Entries :func:`versions` leaves out are never deleted.

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
        _remove_entry(store / version)
    if store.is_dir():
        remove_abandoned_temps(store)
    return old


def remove_abandoned_temps(store_dir: str | os.PathLike) -> list[str]:
    """Remove the temporary directories (``.tmp-*``) of saves that are no longer running.

    A save holds an exclusive ``flock`` on ``<tmp>/.owner`` from just after
    creating its directory until it has renamed it into place; the kernel
    drops the lock when the process dies, however it dies. So a temporary
    directory whose owner file can be locked belongs to a dead save and is
    removed at once, and one whose lock is held belongs to a live save, here
    or in another process, and is kept. One without an owner file (a save
    between ``mkdir`` and taking its lock, or between dropping the owner file
    and its rename, both instants; or a save on a file system without
    ``flock``) is removed only when older than an hour.

    Returns
    -------
    list of str
        The names removed.
    """
    removed = []
    for tmp in Path(store_dir).glob(f"{_TMP_PREFIX}*"):
        if not tmp.is_symlink() and tmp.is_dir() and _abandoned(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp.name)
    return removed


def _not_ahead(version: object, when: datetime) -> datetime:
    if when > datetime.now(UTC) + CLOCK_SKEW:
        raise ModelError(f"version {version}: creation time {when.isoformat()} lies in the "
                         f"future (more than {CLOCK_SKEW.total_seconds() / 3600:g} h ahead "
                         f"of this clock)")
    return when


@contextmanager
def _owned_temp_dir(store: Path, version: str):
    """A fresh temporary directory holding the owner lock; removed unless renamed away."""
    tmp = store / f"{_TMP_PREFIX}{version}-{secrets.token_hex(4)}"
    tmp.mkdir()
    fd = None
    try:
        fd = _take_ownership(tmp)
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if fd is not None:
            os.close(fd)


def _take_ownership(tmp: Path) -> int | None:
    """Lock ``tmp/.owner``; the file is locked before it appears under that name.

    On a file system without ``flock`` the save goes on unowned (None): its
    directory is then protected for an hour only, by its age.
    """
    pending = tmp / f"{_OWNER_FILE}.pending"
    fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        locked = _lock(fd, pending)
        if locked:
            os.write(fd, f"{os.getpid()}\n".encode())
            os.rename(pending, tmp / _OWNER_FILE)
    except BaseException:
        os.close(fd)
        raise
    if not locked:
        os.close(fd)
        pending.unlink()
        return None
    return fd


def _lock(fd: int, path: Path) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        log.warning("cannot lock %s (%s); saving without an owner file", path, exc.strerror)
        return False
    return True


def _publish(tmp: Path, final: Path) -> None:
    """Drop the owner file (the lock stays held on the open file) and rename into place."""
    (tmp / _OWNER_FILE).unlink(missing_ok=True)
    _fsync_dir(tmp)
    os.rename(tmp, final)
    _fsync_dir(final.parent)


def _abandoned(tmp: Path) -> bool:
    try:
        fd = os.open(tmp / _OWNER_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return _age_s(tmp) > _UNOWNED_TMP_SECONDS
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _remove_entry(path: Path) -> None:
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path)


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
    name = f"{path.name}/{META_FILE}"
    try:
        meta = json.loads((path / META_FILE).read_bytes())
    except FileNotFoundError:
        raise ModelError(f"{path.name}: no {META_FILE}; not a model version") from None
    except OSError as exc:
        raise ModelError(f"{name} is unreadable: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ModelError(f"{name} is not JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{name} is not a JSON object")
    if meta.get("format") != FORMAT:
        raise ModelError(f"{name}: format {meta.get('format')!r} is not {FORMAT}")
    if meta.get("version") != path.name:
        raise ModelError(f"{name}: version {meta.get('version')!r} "
                         f"does not match the directory name {path.name!r}")
    return meta


def _check_params(version: str, meta: dict) -> None:
    """The training parameters scoring reads: λ, and the signal weights when recorded."""
    params = meta.get("params", {})
    if not isinstance(params, dict):
        raise ModelError(f"{version}/{META_FILE}: params is not an object")
    if "params" in meta and not _finite_number(params.get("regularization"), minimum=0):
        raise ModelError(f"{version}/{META_FILE}: params.regularization "
                         f"{params.get('regularization')!r} is not a finite number >= 0")
    weights = params.get("signal_weights")
    if weights is None:
        return
    names = {f.name for f in dataclasses.fields(SignalWeights)}
    if (not isinstance(weights, dict) or set(weights) != names
            or not all(_finite_number(value) for value in weights.values())):
        raise ModelError(f"{version}/{META_FILE}: params.signal_weights must give a finite "
                         f"number for each of {sorted(names)}")


def _finite_number(value, minimum: float = -math.inf) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= minimum)


def _read_array(version: str, path: Path, name: str, expected) -> np.ndarray:
    file = f"{version}/{name}.npy"
    if not isinstance(expected, dict):
        raise ModelError(f"{version}/{META_FILE}: the entry of {name} is not an object")
    try:
        data = (path / f"{name}.npy").read_bytes()
    except OSError as exc:
        raise ModelError(f"{file} is missing or unreadable: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected.get("sha256"):
        raise ModelError(f"{file}: checksum {digest} does not match meta.json "
                         f"{expected.get('sha256')}; the file is corrupt")
    _check_npy_length(file, data)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, EOFError, OSError, ... on bad input
        raise ModelError(f"{file} is not a plain .npy array: {exc}") from None
    if array.dtype.str != expected.get("dtype") or list(array.shape) != expected.get("shape"):
        raise ModelError(f"{file}: {array.dtype.str} {list(array.shape)} differs from meta.json "
                         f"{expected.get('dtype')} {expected.get('shape')}")
    _check_layout(file, name, array)
    return array


def _check_npy_length(file: str, data: bytes) -> None:
    """The file holds exactly its header and the bytes its header's shape and dtype take."""
    buffer = io.BytesIO(data)
    try:
        major, _ = np.lib.format.read_magic(buffer)
        read_header = {1: np.lib.format.read_array_header_1_0,
                       2: np.lib.format.read_array_header_2_0}[major]
        shape, _, dtype = read_header(buffer)
    except Exception as exc:  # a short or garbled header raises ValueError, KeyError, ...
        raise ModelError(f"{file}: no readable .npy header ({len(data)} bytes): {exc}") from None
    if dtype.hasobject:
        raise ModelError(f"{file}: holds Python objects, which are never loaded")
    expected = buffer.tell() + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "followed by stray bytes"
        raise ModelError(f"{file} is {state}: {len(data)} bytes where its header "
                         f"{dtype.str} {list(shape)} needs {expected}")


def _check_layout(file: str, name: str, array: np.ndarray) -> None:
    ndim, kind = ARRAY_LAYOUT[name]
    kind_ok = array.dtype.kind == kind and (kind != "f" or array.dtype.itemsize in (4, 8))
    if array.ndim != ndim or not kind_ok:
        raise ModelError(f"{file}: a {array.ndim}-D {array.dtype.str} array where a "
                         f"{ndim}-D {_KIND_NAMES[kind]} array belongs")
    if kind == "f" and array.size and not np.isfinite(array).all():
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise ModelError(f"{file}: {bad} of {array.size} values are NaN or infinite")


def _check_consistent(version: str, arrays: dict[str, np.ndarray]) -> None:
    n_items = len(arrays["item_ids"])
    if n_items == 0 or arrays["item_factors"].shape[1] == 0:
        raise ModelError(f"{version}/item_factors.npy: {list(arrays['item_factors'].shape)}; "
                         f"a model needs at least one item and one factor")
    for name in _PER_ITEM:
        if len(arrays[name]) != n_items:
            raise ModelError(f"{version}/{name}.npy: {name} has {len(arrays[name])} rows, "
                             f"item_ids has {n_items}")
    _check_unique(version, arrays["item_ids"])
    for items, scores in _NEIGHBOUR_PAIRS:
        if arrays[items].shape != arrays[scores].shape:
            raise ModelError(f"{version}/{scores}.npy: {items} {list(arrays[items].shape)} and "
                             f"{scores} {list(arrays[scores].shape)} differ in shape")
        _check_indices(f"{version}/{items}.npy", items, arrays[items], n_items, "items")
    _check_indices(f"{version}/item_category.npy", "item_category", arrays["item_category"],
                   len(arrays["categories"]), "categories")


def _check_unique(version: str, item_ids: np.ndarray) -> None:
    distinct, counts = np.unique(item_ids, return_counts=True)
    if len(distinct) != len(item_ids):
        raise ModelError(f"{version}/item_ids.npy: id {str(distinct[counts > 1][0])!r} "
                         f"appears more than once")


def _check_indices(file: str, name: str, values: np.ndarray, count: int, what: str) -> None:
    """Every value is -1 (none) or an index into ``count`` rows."""
    if values.size and not -1 <= values.min() <= values.max() < count:
        raise ModelError(f"{file}: {name} refers to {what} outside 0..{count - 1} "
                         f"(values {int(values.min())}..{int(values.max())}; -1 pads)")
