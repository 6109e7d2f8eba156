"""Every setting of the system: its environment name, default, allowed range and meaning.

Settings are read once by :func:`load_settings`, in this order, each over the
one before:

1. the defaults below;
2. a configuration file (TOML), named by ``--config FILE`` or ``RECSYS_CONFIG``;
   its keys are the environment variables' names without ``RECSYS_``, in
   lower case (``blend = 0.1`` for ``RECSYS_BLEND``, ``kafka_bootstrap`` for
   ``KAFKA_BOOTSTRAP``), and its values are TOML numbers, strings and booleans;
3. the environment (``RECSYS_*``, ``KAFKA_BOOTSTRAP``).

A value that cannot be parsed or is out of range, an unknown key in the file
and an unknown ``RECSYS_*`` variable fail fast with a message that names what
to fix (and the closest valid name). Functions elsewhere take plain values,
not this object; only entry points (the CLI, the worker, the benchmarks) read
it. :func:`read_settings` also says where each value came from (``recsys
config`` shows it).

Example
-------
>>> s = load_settings({"RECSYS_ALS_FACTORS": "32"})
>>> s.als_factors, s.events_topic
(32, 'events')
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.events import DEFAULT_LIMITS, EventLimits


class ConfigError(ValueError):
    """A setting is malformed or out of range; the message says which and why."""


#: The variable naming the configuration file (``recsys --config FILE`` sets it).
CONFIG_ENV = "RECSYS_CONFIG"
#: ``RECSYS_*`` variables that are not settings, and who reads them.
OTHER_VARIABLES = {
    CONFIG_ENV: "the configuration file",
    "RECSYS_KAFKA_SASL_PASSWORD": "the SASL password (shared.kafka_security; never a setting)",
    "RECSYS_KAFKA_SSL_KEY_PASSWORD": "the TLS key's password (shared.kafka_security; never a "
                                     "setting)",
    "RECSYS_DATA_DIR": "where the reference data sets are (batch.readers)",
    "RECSYS_PROFILES_DIR": "where the shipped profiles are (batch.evaluate)",
}


@dataclass(frozen=True)
class _Check:
    """A setting's allowed range: the test, and how a message states it."""

    test: Callable[[Any], bool]
    allowed: str


def _setting(env: str, default: Any, doc: str, *, check: _Check | None = None) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc, "check": check})


def _one_of(*choices: str) -> _Check:
    return _Check(lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices))


_positive = _Check(lambda v: v > 0, "above 0")
_non_negative = _Check(lambda v: v >= 0, "0 or more")
_unit_interval = _Check(lambda v: 0.0 <= v <= 1.0, "between 0 and 1")
_port = _Check(lambda v: 1 <= v <= 65535, "a TCP port, 1 to 65535")


def _is_time_zone(name: str) -> bool:
    """Whether :mod:`zoneinfo` has a zone of this name (the system's IANA database, else
    the ``tzdata`` package)."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder (Europe)
        return False
    return True


_time_zone = _Check(_is_time_zone, "an IANA time zone name such as 'UTC', 'Europe/Berlin' or "
                                   "'America/New_York' (the case matters)")


@dataclass(frozen=True)
class Settings:
    """The system's configuration. See each field's ``doc`` metadata."""

    # --- Kafka -------------------------------------------------------------
    kafka_bootstrap: str = _setting(
        "KAFKA_BOOTSTRAP", "127.0.0.1:9092",
        "Bootstrap servers of the Kafka cluster; unset: the local broker on RECSYS_KAFKA_PORT.")
    kafka_port: int = _setting(
        "RECSYS_KAFKA_PORT", 9092,
        "Port of the project's own local broker (recsys kafka start).", check=_port)
    kafka_home: str = _setting(
        "RECSYS_KAFKA_HOME", str(Path.home() / ".cache" / "recsys"),
        "Where the local broker's jars, storage and log live (outside git).")
    events_topic: str = _setting("RECSYS_EVENTS_TOPIC", "events", "Topic of shopper events.")
    recommendations_topic: str = _setting(
        "RECSYS_RECOMMENDATIONS_TOPIC", "recommendations", "Topic recommendations go to.")
    dlq_topic: str = _setting(
        "RECSYS_DLQ_TOPIC", "events-dlq", "Dead-letter topic for events that fail validation.")
    model_updates_topic: str = _setting(
        "RECSYS_MODEL_UPDATES_TOPIC", "model-updates",
        "Compacted topic on which the batch job announces new model versions.")
    events_partitions: int = _setting(
        "RECSYS_EVENTS_PARTITIONS", 8, "Partitions of the events topic (the unit of scale).",
        check=_positive)
    recommendations_partitions: int = _setting(
        "RECSYS_RECOMMENDATIONS_PARTITIONS", 8, "Partitions of the recommendations topic.",
        check=_positive)
    replication_factor: int = _setting(
        "RECSYS_REPLICATION_FACTOR", 1, "Replication factor of every topic the project creates.",
        check=_positive)
    # Security of every Kafka client; shared.kafka_security turns these into each client's
    # options and rejects combinations that cannot work. The passwords themselves are not
    # settings (so no listing shows them): RECSYS_KAFKA_SASL_PASSWORD and
    # RECSYS_KAFKA_SSL_KEY_PASSWORD are read from the environment, or from the *_FILE below.
    kafka_security_protocol: str = _setting(
        "RECSYS_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT",
        "How Kafka clients connect: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
        check=_one_of("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    kafka_sasl_mechanism: str = _setting(
        "RECSYS_KAFKA_SASL_MECHANISM", "",
        "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; unset: PLAIN (SASL_* only).",
        check=_one_of("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
    kafka_sasl_username: str = _setting(
        "RECSYS_KAFKA_SASL_USERNAME", "", "SASL username (needed by SASL_PLAINTEXT, SASL_SSL).")
    kafka_sasl_password_file: str = _setting(
        "RECSYS_KAFKA_SASL_PASSWORD_FILE", "",
        "File holding the SASL password (else RECSYS_KAFKA_SASL_PASSWORD; not both).")
    kafka_ssl_ca_file: str = _setting(
        "RECSYS_KAFKA_SSL_CA_FILE", "",
        "PEM CA certificates the brokers' certificates are checked against (SSL, SASL_SSL); "
        "unset: the system's trust store.")
    kafka_ssl_cert_file: str = _setting(
        "RECSYS_KAFKA_SSL_CERT_FILE", "",
        "PEM client certificate for mutual TLS (with RECSYS_KAFKA_SSL_KEY_FILE).")
    kafka_ssl_key_file: str = _setting(
        "RECSYS_KAFKA_SSL_KEY_FILE", "", "PEM private key of the client certificate.")
    kafka_ssl_key_password_file: str = _setting(
        "RECSYS_KAFKA_SSL_KEY_PASSWORD_FILE", "",
        "File holding the private key's password (else RECSYS_KAFKA_SSL_KEY_PASSWORD; "
        "neither: the key is not encrypted).")
    # What the stream worker's HTTP server exposes (with RECSYS_WEB_PORT).
    web_host: str = _setting(
        "RECSYS_WEB_HOST", "127.0.0.1",
        "Address the worker's HTTP views listen on (0.0.0.0: every interface); other workers "
        "forward a user's /recommendations/ request to it unless it is 0.0.0.0 or ::.")
    web_table_views: bool = _setting(
        "RECSYS_WEB_TABLE_VIEWS", False,
        "Serve Faust's built-in /table/ (raw table rows) and /router/ (cluster layout) views.")

    # --- Events ------------------------------------------------------------
    max_event_bytes: int = _setting(
        "RECSYS_MAX_EVENT_BYTES", DEFAULT_LIMITS.max_bytes,
        "Events larger than this go to the dead-letter topic.", check=_positive)
    max_dwell_ms: int = _setting(
        "RECSYS_MAX_DWELL_MS", DEFAULT_LIMITS.max_dwell_ms,
        "Largest believable dwell time of one view.", check=_positive)
    max_price: float = _setting("RECSYS_MAX_PRICE", DEFAULT_LIMITS.max_price,
                                "Largest believable price.", check=_positive)
    max_quantity: int = _setting("RECSYS_MAX_QUANTITY", DEFAULT_LIMITS.max_quantity,
                                 "Largest believable quantity.", check=_positive)
    max_id_chars: int = _setting(
        "RECSYS_MAX_ID_CHARS", DEFAULT_LIMITS.max_id_chars,
        "Longest event, user, session and item id, in characters (a UUID has 36, a hex "
        "SHA-256 64). It bounds the users row: with the other defaults a row holds at most "
        "about 920 ids (history, purchases, recent event ids, two sessions' items and "
        "items shown), about 130 KB of ASCII and under 520 KB of 4-byte characters at 128, "
        "within Kafka's 1 MiB changelog messages.",
        check=_positive)
    max_category_chars: int = _setting(
        "RECSYS_MAX_CATEGORY_CHARS", DEFAULT_LIMITS.max_category_chars,
        "Longest category, in characters: a category path such as "
        "'home/kitchen/cookware/pans' is far shorter; a category is a lookup key like an "
        "item id, so it gets the same bound.", check=_positive)
    max_clock_skew_s: float = _setting(
        "RECSYS_MAX_CLOCK_SKEW_S", DEFAULT_LIMITS.max_clock_skew_s,
        "How far an event's ts may be ahead of the worker's clock, in seconds; later events "
        "go to the dead-letter topic. One day covers drifting device clocks and local time "
        "sent as if it were UTC (at most 14 h ahead); an event further ahead comes from a "
        "broken clock and would stay the newest in every time-ordered state.",
        check=_non_negative)

    # --- Signals -> confidence (c_ui = 1 + alpha * r_ui) ---------------------
    weight_view: float = _setting(
        "RECSYS_WEIGHT_VIEW", 0.1, "r of a view without dwell time.", check=_non_negative)
    weight_dwell: float = _setting(
        "RECSYS_WEIGHT_DWELL", 0.15,
        "Extra r of a view watched for dwell_cap_ms or longer (linear below).",
        check=_non_negative)
    dwell_cap_ms: int = _setting(
        "RECSYS_DWELL_CAP_MS", 60000, "Dwell time at which a view's extra weight saturates.",
        check=_positive)
    weight_click: float = _setting("RECSYS_WEIGHT_CLICK", 0.25, "r of a click.",
                                   check=_non_negative)
    weight_add_to_cart: float = _setting(
        "RECSYS_WEIGHT_ADD_TO_CART", 0.5, "r of an add-to-cart.", check=_non_negative)
    weight_buy: float = _setting("RECSYS_WEIGHT_BUY", 1.0, "r of a purchase.",
                                 check=_non_negative)
    alpha: float = _setting("RECSYS_ALPHA", 150.0, "Confidence scale alpha.", check=_positive)

    # --- Batch ALS -----------------------------------------------------------
    # The ALS and scoring defaults (and alpha above) are what `recsys evaluate --tune` chose
    # on the reference data, fit on train_tr and chosen on train_valid, never the test set
    # (profiles/yoochoose-tuned.toml records the choice). profiles/paper.toml is the paper's
    # path: ALS-similar items of the query item re-ranked by the user's taste.
    als_factors: int = _setting("RECSYS_ALS_FACTORS", 32, "Latent factors.", check=_positive)
    als_regularization: float = _setting(
        "RECSYS_ALS_REGULARIZATION", 0.1, "ALS regularization lambda.", check=_non_negative)
    als_iterations: int = _setting("RECSYS_ALS_ITERATIONS", 15, "ALS sweeps.", check=_positive)
    als_use_gpu: bool = _setting("RECSYS_ALS_USE_GPU", False, "Train on a CUDA GPU.")
    similar_k: int = _setting(
        "RECSYS_SIMILAR_K", 100, "Similar items kept per item (the candidates).",
        check=_positive)
    model_dir: str = _setting(
        "RECSYS_MODEL_DIR", "var/models", "Model store: one directory per version.")
    keep_versions: int = _setting(
        "RECSYS_KEEP_VERSIONS", 3, "Model versions kept in the store.", check=_positive)
    retrain_timezone: str = _setting(
        "RECSYS_RETRAIN_TIMEZONE", "UTC",
        "Time zone whose wall clock `recsys retrain --cron` reads; the log shows each next run "
        "in it and in UTC.", check=_time_zone)

    # --- Scoring ------------------------------------------------------------
    n_recommendations: int = _setting(
        "RECSYS_N", 20, "Length of a recommendation list.", check=_positive)
    blend: float = _setting(
        "RECSYS_BLEND", 0.1,
        "Weight of the user's personal score against item similarity (0 = similar only).",
        check=_unit_interval)
    filter_bought: bool = _setting(
        "RECSYS_FILTER_BOUGHT", True, "Leave out items the user already bought.")
    filter_shown: bool = _setting(
        "RECSYS_FILTER_SHOWN", False, "Leave out items already shown in this session.")
    source_similar: float = _setting(
        "RECSYS_SOURCE_SIMILAR", 0.25, "Weight of ALS-similar items among the candidates.",
        check=_non_negative)
    source_cooc: float = _setting(
        "RECSYS_SOURCE_COOC", 0.25, "Weight of items seen in the same sessions.",
        check=_non_negative)
    source_next: float = _setting(
        "RECSYS_SOURCE_NEXT", 0.5, "Weight of items that followed the anchor in sessions.",
        check=_non_negative)
    source_session: float = _setting(
        "RECSYS_SOURCE_SESSION", 6.0, "Weight of the session's own recent items.",
        check=_non_negative)
    source_similar_decay: float = _setting(
        "RECSYS_SOURCE_SIMILAR_DECAY", 0.0,
        "Weight decay per step back of older session items as similar anchors (0 = query only).",
        check=_unit_interval)
    source_cooc_decay: float = _setting(
        "RECSYS_SOURCE_COOC_DECAY", 0.6, "As above, for co-occurrence anchors.",
        check=_unit_interval)
    source_next_decay: float = _setting(
        "RECSYS_SOURCE_NEXT_DECAY", 0.0, "As above, for sequence anchors.", check=_unit_interval)
    source_session_decay: float = _setting(
        "RECSYS_SOURCE_SESSION_DECAY", 0.35, "As above, for the session's own items.",
        check=_unit_interval)
    source_window: int = _setting(
        "RECSYS_SOURCE_WINDOW", 20, "Most recent session items used as anchors.",
        check=_positive)
    source_pool: int = _setting(
        "RECSYS_SOURCE_POOL", 200,
        "Candidates the personal score re-ranks (0 = all).", check=_non_negative)
    normalisation: str = _setting(
        "RECSYS_NORMALISATION", "minmax",
        "How similarity and personal scores are scaled within the candidates: minmax or rank.",
        check=_one_of("minmax", "rank"))
    exclude_query: bool = _setting(
        "RECSYS_EXCLUDE_QUERY", False, "Leave the item being looked at out of its list.")
    exclude_session: bool = _setting(
        "RECSYS_EXCLUDE_SESSION", False, "Leave every item seen in the session out.")
    session_max: int = _setting(
        "RECSYS_SESSION_MAX", 50, "Items (and shown items) kept per session.", check=_positive)
    user_sessions: int = _setting(
        "RECSYS_USER_SESSIONS", 2,
        "Sessions kept in a user's row, the newest; an event of an older one starts it again.",
        check=_positive)
    history_max: int = _setting(
        "RECSYS_HISTORY_MAX", 100, "Interactions kept per user for the fold-in.",
        check=_positive)
    decay_half_life_s: float = _setting(
        "RECSYS_DECAY_HALF_LIFE_S", 0.0,
        "Half-life of a user's past confidence in seconds (0 = no decay).",
        check=_non_negative)

    # --- Stream worker ------------------------------------------------------
    app_id: str = _setting("RECSYS_APP_ID", "recsys", "Faust app id (consumer group).")
    table_dir: str = _setting(
        "RECSYS_TABLE_DIR", "var/tables", "Where the worker keeps its RocksDB tables.")
    web_port: int = _setting("RECSYS_WEB_PORT", 6066, "HTTP port of the worker's views.",
                             check=_port)
    stream_buffer: int = _setting(
        "RECSYS_STREAM_BUFFER", 4096,
        "Events buffered per worker, and events between offset commits.", check=_positive)
    batch_max: int = _setting(
        "RECSYS_BATCH_MAX", 256,
        "Most events a worker scores together; a batch also ends when no event is waiting.",
        check=_positive)
    row_cache: int = _setting(
        "RECSYS_ROW_CACHE", 10_000,
        "Decoded users rows a worker keeps in memory, most recently used; a user at the "
        "100-item history bound with full sessions takes about 21 KiB.",
        check=_positive)
    latest_lists: int = _setting(
        "RECSYS_LATEST_LISTS", 50_000,
        "Users whose latest list a worker keeps in memory for its HTTP view.",
        check=_positive)
    producer_linger_ms: int = _setting(
        "RECSYS_PRODUCER_LINGER_MS", 1,
        "How long the worker's producer waits to fill a batch (at least 1 ms); every list "
        "waits this long at low rates, and under load batches fill while requests are in "
        "flight.", check=_non_negative)
    model_poll_s: float = _setting(
        "RECSYS_MODEL_POLL_S", 1.0,
        "How often a worker checks model-updates for a new version.", check=_positive)
    worker_id: str = _setting(
        "RECSYS_WORKER_ID", "",
        "Stable name of this worker in its consumer group (static membership: a restarted "
        "worker takes its partitions back at once); empty: derived from the host name and "
        "RECSYS_TABLE_DIR. Two live workers must never share one.")
    session_timeout_s: float = _setting(
        "RECSYS_SESSION_TIMEOUT_S", 30.0,
        "How long the group waits for a silent worker before its partitions move to others.",
        check=_positive)
    dedup_window_s: float = _setting(
        "RECSYS_DEDUP_WINDOW_S", 86_400.0,
        "Event time over which a user's event ids are remembered to drop copies.",
        check=_non_negative)
    dedup_max_ids: int = _setting(
        "RECSYS_DEDUP_MAX_IDS", 512, "Most event ids remembered per user.", check=_positive)
    stall_s: float = _setting(
        "RECSYS_STALL_S", 60.0,
        "/health/ answers 503 when a partition has had unread events and no progress this long.",
        check=_positive)

    def describe(self) -> list[tuple[str, str, Any, str]]:
        """(field, env name, current value, meaning) for every setting."""
        return [(f.name, f.metadata["env"], getattr(self, f.name), f.metadata["doc"])
                for f in dataclasses.fields(self)]

    def event_limits(self) -> EventLimits:
        """The bounds :func:`shared.events.parse_event` checks, as configured here."""
        return EventLimits(max_bytes=self.max_event_bytes, max_dwell_ms=self.max_dwell_ms,
                           max_price=self.max_price, max_quantity=self.max_quantity,
                           max_id_chars=self.max_id_chars,
                           max_category_chars=self.max_category_chars,
                           max_clock_skew_s=self.max_clock_skew_s)


def _parse(raw: str, kind: type, env: str) -> Any:
    text = raw.strip()
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise ConfigError(
            f"{env}={raw!r} is not {_ENV_TYPES[kind]}; set one or unset {env} to use the "
            f"default") from None
    if not text:
        raise ConfigError(f"{env} is empty; set a value or unset it to use the default")
    return text


def _typed(value: Any, kind: type, where: str) -> Any:
    """A configuration file's value as the setting's type; integers are taken for floats."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not kind:
        raise ConfigError(f"{where} = {value!r} is not {_KINDS[kind]}; write a TOML "
                          f"{_TOML_TYPES[kind]}")
    return value


_KINDS = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}
_ENV_TYPES = {int: "an integer", float: "a number",
              bool: "a boolean (true/false, 1/0, yes/no, on/off)"}
_TOML_TYPES = {str: "string in quotes", int: "integer", float: "number",
               bool: "boolean (true or false)"}
_TYPES = {"str": str, "int": int, "float": float, "bool": bool}
_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_BY_ENV = {f.metadata["env"]: f for f in _FIELDS.values()}
def config_key(env: str) -> str:
    """The configuration file's key of the setting read from ``env``.

    >>> config_key("RECSYS_BLEND"), config_key("KAFKA_BOOTSTRAP")
    ('blend', 'kafka_bootstrap')
    """
    return env.removeprefix("RECSYS_").lower()


#: Configuration-file key -> field.
_BY_KEY = {config_key(env): f for env, f in _BY_ENV.items()}


def _kind(f: dataclasses.Field) -> type:
    return _TYPES[f.type] if isinstance(f.type, str) else f.type


def _closest(name: str, names) -> str:
    """"; did you mean X?" for the most similar of ``names`` (compared without ``RECSYS_``)."""
    by_stem = {n.removeprefix("RECSYS_"): n for n in names}
    match = difflib.get_close_matches(name.removeprefix("RECSYS_"), list(by_stem), n=1, cutoff=0.6)
    return f"; did you mean {by_stem[match[0]]}?" if match else ""


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings a TOML configuration file sets, by field name, typed and range-checked.

    Raises
    ------
    ConfigError
        When the file cannot be read or parsed, a key is not a setting (the
        message names the closest one), or a value has the wrong type or is
        out of range.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"configuration file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        f = _BY_KEY.get(key)
        if f is None:
            hint = _closest(key, _BY_KEY)
            if isinstance(value, dict):
                hint += " (keys are not grouped in tables: write them at the top level)"
            raise ConfigError(f"{path}: {key} is not a setting{hint}")
        value = _typed(value, _kind(f), f"{path}: {key}")
        _check_range(f, value, f"{path}: {key}")
        values[f.name] = value
    return values


def _check_range(f: dataclasses.Field, value: Any, where: str) -> None:
    check = f.metadata["check"]
    if check is not None and not check.test(value):
        raise ConfigError(f"{where}={value!r} is out of range: it must be {check.allowed} "
                          f"({f.metadata['doc']})")


def _unknown_variables(environ: Mapping[str, str]) -> None:
    known = set(_BY_ENV) | set(OTHER_VARIABLES)
    for name in sorted(environ):
        if name.startswith("RECSYS_") and name not in known:
            raise ConfigError(f"{name} is not a setting{_closest(name, known)} "
                              f"(unset it; `recsys config` lists every setting)")


def read_settings(environ: Mapping[str, str] | None = None, *, config_file: str | Path | None = None,
                  **overrides: Any) -> tuple[Settings, dict[str, str]]:
    """The settings (see the module docstring for the order), and where each came from.

    ``config_file`` is read instead of the file ``RECSYS_CONFIG`` names;
    ``overrides`` (field names) win over everything. The second value maps
    each field name to ``"default"``, the file's path or the variable's name.

    Raises
    ------
    ConfigError
        When a value does not parse or is out of range, or a key or variable
        is unknown; the message names it.
    """
    environ = os.environ if environ is None else environ
    _unknown_variables(environ)
    unknown = set(overrides) - set(_FIELDS)
    if unknown:
        raise ConfigError(f"unknown settings: {sorted(unknown)}")
    if config_file is None and environ.get(CONFIG_ENV, "").strip():
        config_file = environ[CONFIG_ENV].strip()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if config_file is not None:
        values = read_config_file(config_file)
        sources = dict.fromkeys(values, str(config_file))
    for f in _FIELDS.values():
        env = f.metadata["env"]
        if f.name in overrides:
            value, source = overrides[f.name], "override"
        elif env in environ:
            value, source = _parse(environ[env], _kind(f), env), env
        else:
            continue
        _check_range(f, value, env)
        values[f.name], sources[f.name] = value, source
    if "kafka_bootstrap" not in values:  # the project's own broker, wherever it listens
        values["kafka_bootstrap"] = f"127.0.0.1:{values.get('kafka_port', Settings.kafka_port)}"
        sources["kafka_bootstrap"] = sources.get("kafka_port", "default")
    for name in _FIELDS:
        sources.setdefault(name, "default")
    return Settings(**values), sources


def bootstrap_given(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the bootstrap servers are configured (``KAFKA_BOOTSTRAP`` or the file's
    ``kafka_bootstrap``), rather than the project's own broker's address."""
    environ = os.environ if environ is None else environ
    if "KAFKA_BOOTSTRAP" in environ:
        return True
    path = environ.get(CONFIG_ENV, "").strip()
    return bool(path) and "kafka_bootstrap" in read_config_file(path)


def load_settings(environ: Mapping[str, str] | None = None, *,
                  config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """The settings of :func:`read_settings`, without their sources."""
    return read_settings(environ, config_file=config_file, **overrides)[0]
