"""Train a model version from events and publish it to the model store.

Steps: the ``user_items`` confidence matrix (:mod:`batch.matrix`), implicit
ALS, each item's neighbours and the popularity (:mod:`batch.neighbours`), then
an atomic save (:mod:`shared.model_store`) and pruning of old versions.
:func:`retrain` takes events as :class:`~batch.columns.EventColumns` from any
source and records what the caller says about that source in meta.json.
Users and items are put in id order first, so a model depends on the events
alone, not on the order a file or a topic's partitions gave them in.

``recsys retrain`` (:class:`RetrainJob`) reads everything retained on the
``events`` topic (:mod:`batch.event_log`) or an event file, trains, saves and
announces the version on ``model-updates`` (:func:`announce`), for stream
workers to hot-swap. With ``--every`` or ``--cron`` it keeps running
(:mod:`batch.schedule`; a cron expression reads the wall clock of
``RECSYS_RETRAIN_TIMEZONE``): a run when the topic holds no event the newest
version has not seen is skipped, a failed run is logged and the next slot
tried, and SIGINT or SIGTERM stops it between runs.

The live store is ``RECSYS_MODEL_DIR``: workers load the newest version in it
when they start and each version announced on ``model-updates``. A retrain
from a file (``--input FILE``) writes to a store of its own,
``<RECSYS_MODEL_DIR>-<file name>`` (:func:`input_store`), unless ``--store``
names one, so that it neither prunes a live version nor leaves a version that
a worker restarted later would serve. Only a version in the live store is
announced (by default, or with ``--announce``): a worker refuses a version
outside its store, and ``--announce`` into another store is an error.

ALS is ``implicit``'s: the matrix holds c_ui = 1 + alpha * r_ui and
``implicit``'s own ``alpha`` stays 1.0 (see :mod:`batch.matrix`);
``regularization`` is the λ of x_u = (YᵀC_uY + λI)⁻¹ YᵀC_u p_u as it stands,
not scaled by the number of a user's items (implicit 0.7's CPU and GPU
solvers add λ to the diagonal of YᵀY).

The training parameters (:class:`~batch.training.TrainingParams`), fitting ALS
and the helpers a model is assembled from are in :mod:`batch.training`,
announcing on ``model-updates`` in :mod:`batch.publish`; their names are
importable from here too.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import implicit
import numpy as np
from confluent_kafka import KafkaException

from batch.columns import EventColumns
from batch.event_log import EventLogError, end_offsets_of, read_topic, topic_offsets
from batch.matrix import build_interactions
from batch.neighbours import cooccurrence_neighbours, popularity, sequence_neighbours, similar_by_cosine
from batch.publish import (
    MODEL_UPDATE_KEY,  # noqa: F401  (re-exported)
    AnnounceError,
    announce,
    last_announced,
)
from batch.readers import BadRowError, FormatError, detect_format, read_events
from batch.schedule import Cron, Every, Schedule, parse_interval, run_periodically, stop_on_signals
from batch.training import (RetrainError, TrainingParams, _check_columns, _check_interactions,
                            _counts, _in_id_order, _Steps, _UsedEvents, fit_als)
from shared.broker import ensure_broker
from shared.events import EventLimits
from shared.model import Model
from shared.model_store import META_FILE, ModelError, latest_version, new_version, prune, save_model
from shared.topics import ensure_topics, project_topics

#: Steps of :func:`train_model`, in order; ``meta["timings_s"]`` has one entry each.
STEPS = ("matrix", "als", "similar", "cooccurrence", "sequence", "popularity")


def train_model(columns: EventColumns, *, params: TrainingParams, source: dict | None = None,
                progress: bool = True) -> Model:
    """Train a model from events: matrix, ALS, neighbours, popularity.

    Parameters
    ----------
    columns : EventColumns
    params : TrainingParams
        Signal weights, ALS and neighbour parameters.
    source : dict, optional
        Where the events came from (file, topic offsets, ...); kept in meta.
    progress : bool
        Report each step on stderr.

    Returns
    -------
    Model
        ``meta`` holds version, created_at, params (:meth:`TrainingParams.as_dict` and
        the ``implicit`` version), data, counts and timings_s.

    Raises
    ------
    RetrainError
        When the events cannot make a model (none, none usable, fewer than 2 items).
    """
    steps = _Steps(progress)
    _check_columns(columns)
    with steps.step("matrix"):
        columns = _in_id_order(columns)
        interactions = build_interactions(columns, params.weights)
    _check_interactions(columns, interactions)
    with steps.step("als"):
        item_factors = fit_als(
            interactions.user_items, factors=params.factors,
            regularization=params.regularization, iterations=params.iterations,
            use_gpu=params.use_gpu, random_state=params.random_state,
            num_threads=params.num_threads,
            on_iteration=steps.iterations(params.iterations)).item_factors
    events = _UsedEvents.of(columns, interactions)
    n_items = len(interactions.items)
    with steps.step("similar"):
        similar = similar_by_cosine(item_factors, params.similar_k)
    with steps.step("cooccurrence"):
        cooc = cooccurrence_neighbours(events.session, events.item, n_items, params.similar_k)
    with steps.step("sequence"):
        follows = sequence_neighbours(events.session, events.item, events.ts_ms, n_items,
                                      params.similar_k, window=params.sequence_window)
    with steps.step("popularity"):
        popular = popularity(events.item, n_items, ts_ms=events.ts_ms,
                             half_life_s=params.popularity_half_life_s)
    now = datetime.now(UTC)
    meta = {"version": new_version(now), "created_at": now.isoformat(timespec="seconds"),
            "params": {**params.as_dict(), "implicit_version": implicit.__version__},
            "data": events.data_range(source),
            "counts": _counts(columns, interactions, events), "timings_s": steps.timings,
            "evaluation": {}}
    return Model(version=meta["version"], item_ids=columns.item_ids[interactions.items].astype(str),
                 item_factors=np.ascontiguousarray(item_factors, dtype=np.float32),
                 similar_items=similar[0], similar_scores=similar[1],
                 cooc_items=cooc[0], cooc_scores=cooc[1],
                 next_items=follows[0], next_scores=follows[1], popularity=popular,
                 item_category=columns.item_category[interactions.items].astype(np.int32),
                 categories=np.asarray(columns.categories).astype(str), meta=meta)


def retrain(columns: EventColumns, store_dir: str | Path, *, params: TrainingParams,
            keep_versions: int = 3, source: dict | None = None,
            progress: bool = True) -> tuple[Model, Path]:
    """Train, save as a new version, prune old versions.

    Saving and pruning also remove the temporary folders of saves that were
    killed, and keep those of saves still running in other processes (see
    :func:`shared.model_store.remove_abandoned_temps`). Pruning keeps the
    newest ``keep_versions`` by creation time, so the version just saved is
    kept whatever other names the store holds.

    Parameters
    ----------
    columns : EventColumns
    store_dir : path
        The model store.
    params : TrainingParams
        What :func:`train_model` trains with.
    keep_versions : int
        Versions kept after saving, the new one included.
    source : dict, optional
        Where the events came from; kept in meta.json.
    progress : bool
        Report steps and a summary on stderr.

    Returns
    -------
    (Model, Path)
        The model and its version directory.

    Raises
    ------
    RetrainError
        Before the store is touched, when the input cannot make a model.
    ModelError
        When the save fails; the store keeps the versions it had.
    """
    model = train_model(columns, params=params, source=source, progress=progress)
    started = time.perf_counter()
    path = save_model(model, store_dir)
    save_s = time.perf_counter() - started
    pruned = prune(store_dir, keep_versions)
    if progress:
        print(summary(model, path, save_s=save_s, pruned=pruned), file=sys.stderr, flush=True)
    return model, path


def summary(model: Model, path: Path, *, save_s: float, pruned: list[str]) -> str:
    """A one-screen account of a finished retrain."""
    counts, timings = model.meta["counts"], model.meta["timings_s"]
    lines = [
        f"retrain: version {model.version}",
        f"  saved to      {path} ({save_s:.1f} s); pruned {len(pruned)} old version(s)",
        f"  events        {counts['events_read']:,} read, {counts['events_used']:,} used",
        f"  users         {counts['users']:,}",
        f"  items         {counts['items']:,}",
        f"  sessions      {counts['sessions']:,}",
        f"  nnz           {counts['nnz']:,}",
        "  time per step " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()),
        f"  total         {sum(timings.values()) + save_s:.1f} s",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class RetrainJob:
    """One retrain as ``recsys retrain`` makes it: read the events, train, save, announce.

    Attributes
    ----------
    store_dir : Path
        The model store.
    params : TrainingParams
        What :func:`train_model` trains with.
    keep_versions : int
    bootstrap : str or None
        Kafka bootstrap servers, to read the topic or announce.
    events_topic : str
        Read when ``input`` is None.
    input, format : str or None
        An event file, and its format (detected when None), to read instead.
    announce_topic : str or None
        Where each new version is announced (model-updates); None: nowhere.
    limits : EventLimits
        Bounds on events' size, dwell, price and quantity.
    progress : bool
        Report reading and training on stderr.
    """

    store_dir: Path
    params: TrainingParams
    keep_versions: int = 3
    bootstrap: str | None = None
    events_topic: str = "events"
    input: str | None = None
    format: str | None = None
    announce_topic: str | None = None
    limits: EventLimits = EventLimits()
    progress: bool = True

    def __call__(self) -> tuple[Model, Path]:
        """Read, train, save and announce; the new model and its directory.

        Raises
        ------
        RetrainError, EventLogError, FormatError, BadRowError, OSError
            Before the store is touched.
        ModelError
            When the save fails.
        AnnounceError
            When the version is saved but its announcement failed.
        """
        columns, source = self.read()
        model, path = retrain(columns, self.store_dir, params=self.params,
                              keep_versions=self.keep_versions, source=source,
                              progress=self.progress)
        if self.announce_topic is not None:
            self._announce(model.meta, path)
        return model, path

    def read(self) -> tuple[EventColumns, dict]:
        """The events to train on, and what meta.json records about their source."""
        if self.input is not None:
            return _read_file(self.input, self.format, self.limits)
        columns, report, source = read_topic(self.bootstrap, self.events_topic,
                                             limits=self.limits, progress=self.progress)
        if report.rows_read == 0:
            raise RetrainError(f"topic {self.events_topic!r} at {self.bootstrap} holds no events;"
                               f" produce some (recsys produce) before retraining")
        if len(columns) == 0:
            raise RetrainError(f"none of the {report.rows_read:,} messages on"
                               f" {self.events_topic!r} is a valid event: {report.rows_bad}")
        return columns, source

    def scheduled(self) -> str:
        """One run of the periodic mode: skipped when no event arrived since the newest version.

        A skipped run announces the newest version when the model-updates topic
        has not heard of it (its announcement failed before).

        Returns
        -------
        str
            What the run did, for the log.
        """
        meta = self._unchanged_meta()
        if meta is None:
            model, _ = self()
            counts = model.meta["counts"]
            announced = f"; announced on {self.announce_topic!r}" if self.announce_topic else ""
            return (f"published version {model.version} from {counts['events_used']:,} of"
                    f" {counts['events_read']:,} events, {counts['items']:,} items{announced}")
        version = meta["version"]
        outcome = f"skipped: no new events on {self.events_topic!r} since version {version}"
        if self.announce_topic is not None:
            last = last_announced(self.bootstrap, self.announce_topic)
            if last is None or last < version:
                self._announce(meta, Path(self.store_dir) / version)
                outcome += f"; announced it on {self.announce_topic!r}, where it was missing"
        return outcome

    def _unchanged_meta(self) -> dict | None:
        """The newest version's meta when it was trained on every event the topic holds now."""
        version = latest_version(self.store_dir)
        if version is None or self.input is not None:
            return None
        try:
            meta = json.loads((Path(self.store_dir) / version / META_FILE).read_text())
            source = meta["data"]["source"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        now = end_offsets_of(topic_offsets(self.bootstrap, self.events_topic))
        unchanged = (source.get("kind") == "topic" and source.get("topic") == self.events_topic
                     and source.get("end_offsets") == now)
        return meta if unchanged else None

    def _announce(self, meta: dict, path: Path) -> None:
        created_at = int(datetime.fromisoformat(meta["created_at"]).timestamp() * 1000)
        announce(meta["version"], path, created_at=created_at, bootstrap=self.bootstrap,
                 topic=self.announce_topic)
        if self.progress:
            print(f"retrain: announced version {meta['version']} on {self.announce_topic!r}",
                  file=sys.stderr, flush=True)


def add_arguments(parser) -> None:
    """Options of ``recsys retrain``."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--from-topic", action="store_true",
                        help="read every event retained on the events topic"
                             " (RECSYS_EVENTS_TOPIC); the default without --input")
    source.add_argument("--input", help="an event log or data set file to train on instead")
    parser.add_argument("--format", default=None,
                        help="format of --input (see batch.readers); default: detected")
    parser.add_argument("--store", default=None, metavar="DIR",
                        help="model store to write to (default: RECSYS_MODEL_DIR, the live store"
                             " workers load from; with --input, <RECSYS_MODEL_DIR>-<the file's"
                             " name up to its first dot>, a store of its own)")
    parser.add_argument("--announce", action=argparse.BooleanOptionalAction, default=None,
                        help="announce the new version on the model-updates topic (default: yes"
                             " when writing to the live store; refused for any other store,"
                             " since workers load only from theirs)")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--every", metavar="INTERVAL",
                      help="retrain periodically, the first time at once: 90s, 30m, 2h")
    when.add_argument("--cron", metavar="'M H DOM MON DOW'",
                      help="retrain at the times a 5-field cron expression (or @hourly, @daily,"
                           " @midnight, @weekly, @monthly, @yearly) matches on the wall clock of"
                           " RECSYS_RETRAIN_TIMEZONE (default UTC)")
    parser.add_argument("--max-runs", type=_positive_int, default=None, metavar="N",
                        help="with --every or --cron: stop after N runs (skipped and failed"
                             " ones count)")


#: Errors a run can meet that leave the store as it was (or, for AnnounceError, saved but
#: unannounced); the periodic mode logs them and waits for the next slot.
RUN_ERRORS = (RetrainError, ModelError, EventLogError, AnnounceError, KafkaException, OSError)


def run(args, settings) -> int:
    """``recsys retrain``: once, or at each slot of --every or --cron; 2 and why on failure.

    Raises
    ------
    ScheduleError
        A :class:`~shared.config.ConfigError`, for a bad --every or --cron: the
        command line's one line saying what to write instead.
    """
    periodic = args.every is not None or args.cron is not None
    if periodic and args.input is not None:
        return _fail("--every and --cron retrain from the events topic; leave out --input")
    if args.max_runs is not None and not periodic:
        return _fail("--max-runs goes with --every or --cron")
    if args.format is not None and args.input is None:
        return _fail("--format goes with --input")
    schedule = schedule_of(args, settings)
    store, live = store_of(args, settings)
    if args.announce and not live:
        return _fail(f"--announce tells the workers to load the new version, but {store} is not"
                     f" their store (RECSYS_MODEL_DIR={settings.model_dir}); leave out"
                     f" --announce, or write into the live store with --store"
                     f" {settings.model_dir}")
    if not live:
        print(f"recsys retrain: writing to {store}, not to the live store {settings.model_dir}"
              f" (RECSYS_MODEL_DIR) that workers load from; the version is not announced"
              + ("" if args.store is not None
                 else f" (--store {settings.model_dir} writes into the live store)"),
              file=sys.stderr, flush=True)
    try:
        job = _job(args, settings, store, announce=live if args.announce is None else args.announce)
        if schedule is None:
            job()
            return 0
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        with stop_on_signals() as stop:
            run_periodically(job.scheduled, schedule, max_runs=args.max_runs, stop=stop,
                             survive=RUN_ERRORS)
    except RUN_ERRORS + (FormatError, BadRowError) as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        return _fail("interrupted")
    return 0


def schedule_of(args, settings) -> Schedule | None:
    """The schedule of --every or --cron (None for a single run), in RECSYS_RETRAIN_TIMEZONE.

    Raises
    ------
    ScheduleError
        When the interval or the cron expression cannot be used.
    """
    zone = ZoneInfo(settings.retrain_timezone)  # a name the settings checked
    if args.every is not None:
        return Every(parse_interval(args.every), zone)
    if args.cron is not None:
        return Cron.parse(args.cron, zone)
    return None


def store_of(args, settings) -> tuple[Path, bool]:
    """The store a retrain writes to, and whether it is the live one (``RECSYS_MODEL_DIR``).

    ``--store`` when given; else, with ``--input``, :func:`input_store`; else the
    live store. A ``--store`` that names the live store by another path (relative,
    through a symbolic link) is the live store.
    """
    live = Path(settings.model_dir)
    if args.store is not None:
        store = Path(args.store)
    elif args.input is not None:
        store = input_store(live, args.input)
    else:
        store = live
    return store, _same_directory(store, live)


def input_store(model_dir: str | Path, input_path: str | Path) -> Path:
    """Where ``recsys retrain --input FILE`` writes unless ``--store`` says:
    ``<model_dir>-<FILE's name up to its first dot>``, beside the live store.

    >>> input_store("var/models", "data/yoochoose-100k/train_full.txt")
    PosixPath('var/models-train_full')
    >>> input_store("/models/", "exports/shop.events.jsonl.gz")
    PosixPath('/models-shop')
    """
    live = Path(model_dir).expanduser()
    if live.name in ("", ".", ".."):
        live = live.resolve()
    stem = Path(input_path).name.lstrip(".").split(".")[0] or "input"
    return live.with_name(f"{live.name}-{stem}")


def _same_directory(a: Path, b: Path) -> bool:
    a, b = a.expanduser(), b.expanduser()
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _job(args, settings, store: Path, *, announce: bool) -> RetrainJob:
    """The job ``args`` ask for, writing to ``store``; starts the local broker when Kafka is
    needed and none is set."""
    bootstrap = ensure_broker(settings) if args.input is None or announce else None
    if announce:
        ensure_topics(bootstrap, [spec for spec in project_topics(settings)
                                  if spec.name == settings.model_updates_topic],
                      replication_factor=settings.replication_factor)
    return RetrainJob(store_dir=store, params=TrainingParams.from_settings(settings),
                      keep_versions=settings.keep_versions, bootstrap=bootstrap,
                      events_topic=settings.events_topic, input=args.input, format=args.format,
                      announce_topic=settings.model_updates_topic if announce else None,
                      limits=settings.event_limits())


def _read_file(path: str, fmt: str | None, limits: EventLimits) -> tuple[EventColumns, dict]:
    fmt = fmt or detect_format(path)
    columns, report = read_events(path, fmt, limits=limits)
    return columns, {"kind": "file", "path": str(Path(path).resolve()), "format": fmt,
                     "rows_read": report.rows_read, "rows_bad": dict(report.rows_bad)}


def _fail(reason) -> int:
    print(f"recsys retrain: {reason}", file=sys.stderr)
    return 2


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)
