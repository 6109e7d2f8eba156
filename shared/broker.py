"""The project's own Apache Kafka broker, for machines without Docker.

The broker is assembled from Maven Central's jars (``org.apache.kafka:kafka_2.13``
at :data:`KAFKA_VERSION`, the same version as the image in docker-compose.yml),
cached outside git, formatted as a single-node KRaft cluster (combined broker
and controller) and started on 127.0.0.1.

By default the broker has one PLAINTEXT listener for clients. For tests of the
clients' security settings (:mod:`shared.kafka_security`) a second listener can
be opened: SASL_PLAINTEXT on ``sasl_port``, accepting the ``sasl_users`` with
PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, and without an authorizer (an
authenticated user may do anything, as on the PLAINTEXT listener).

Layout under ``home`` (``RECSYS_KAFKA_HOME``)::

    kafka-<version>/libs/*.jar       the assembled distribution (shared)
    broker-<port>/data/              KRaft storage of the broker on <port>
    broker-<port>/server.log         its log
    broker-<port>/broker.pid         its process id
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from shared import kafka_log, kafka_security
from shared.config import CONFIG_ENV, Settings, bootstrap_given
from shared.errors import RecsysError

KAFKA_VERSION = "3.9.1"
_DIST = resources.files("shared") / "kafka_dist"
#: Mechanisms the optional SASL_PLAINTEXT listener accepts.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: What a SASL user name or password of the local broker may contain: it is written
#: unquoted into the JAAS configuration and the storage tool's --add-scram argument.
_SASL_CREDENTIAL = re.compile(r"[A-Za-z0-9._-]+")


#: How long :func:`require_broker` waits for a TCP connection to the bootstrap servers, and
#: then for their answer to a metadata request: together, with the interpreter's start,
#: a command reports a broker it cannot reach within 10 s.
CONNECT_TIMEOUT_S = 3.0
METADATA_TIMEOUT_S = 5.0


class BrokerError(RecsysError, RuntimeError):
    """The local broker cannot be assembled or started, or a broker cannot be reached; the
    message says why."""


def _require(tool: str, purpose: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(
            f"'{tool}' is not on PATH; it is needed to {purpose}. Install Java 17 and Maven "
            f"(Debian: apt-get install openjdk-17-jdk-headless maven), or run Kafka with "
            f"'docker compose up kafka' and set KAFKA_BOOTSTRAP=127.0.0.1:9092.")
    return path


def assemble(home: Path, version: str = KAFKA_VERSION) -> Path:
    """Download the broker's jars with Maven once; return the ``libs`` directory.

    Idempotent: a complete earlier download is reused. The download goes to a
    temporary directory renamed into place, so an interrupted one is redone.
    """
    libs = home / f"kafka-{version}" / "libs"
    if (libs / f"kafka_2.13-{version}.jar").exists():
        return libs
    mvn = _require("mvn", "download Apache Kafka from Maven Central")
    libs.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=libs.parent) as work:
        pom = Path(work) / "pom.xml"
        pom.write_text((_DIST / "pom.xml").read_text().replace("@KAFKA_VERSION@", version))
        staged = Path(work) / "libs"
        result = subprocess.run(
            [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={staged}"],
            capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(f"Maven could not assemble Apache Kafka {version}:\n"
                              f"{(result.stdout + result.stderr)[-3000:]}")
        shutil.rmtree(libs, ignore_errors=True)
        staged.rename(libs)
    return libs


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def broker_ready(bootstrap: str, timeout_s: float = 1.0) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0,
                         "socket.connection.setup.timeout.ms": 1000})
    try:
        return len(admin.list_topics(timeout=timeout_s).brokers) > 0
    except Exception:  # KafkaException on timeout or refusal: not ready
        return False


@dataclass(frozen=True)
class LocalBroker:
    """A single-node KRaft broker on 127.0.0.1:``port`` (controller on ``controller_port``).

    With ``sasl_port`` it also listens there with SASL_PLAINTEXT for the
    ``sasl_users`` ((name, password) pairs). Their SCRAM credentials are written
    when the storage is formatted, on the first start of this ``state_dir``; their
    PLAIN passwords are in server.properties, which every start rewrites.
    """

    home: Path
    port: int = 9092
    controller_port: int | None = None
    version: str = KAFKA_VERSION
    heap: str = "1g"
    sasl_port: int | None = None
    sasl_users: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.sasl_users and self.sasl_port is None:
            raise BrokerError("sasl_users need a sasl_port to be accepted on")
        if self.sasl_port is not None and not self.sasl_users:
            raise BrokerError("a SASL listener needs at least one of sasl_users")
        for name, password in self.sasl_users:
            if not (_SASL_CREDENTIAL.fullmatch(name) and _SASL_CREDENTIAL.fullmatch(password)):
                raise BrokerError(f"SASL user {name!r}: names and passwords of the local broker "
                                  f"may contain only letters, digits, '.', '_' and '-'")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str | None:
        """Address of the SASL_PLAINTEXT listener, or None without one."""
        return None if self.sasl_port is None else f"127.0.0.1:{self.sasl_port}"

    @property
    def state_dir(self) -> Path:
        return self.home / f"broker-{self.port}"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "server.log"

    @property
    def _pid_file(self) -> Path:
        return self.state_dir / "broker.pid"

    def pid(self) -> int | None:
        """Process id of the running broker, or None."""
        try:
            pid = int(self._pid_file.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        try:  # when this process started the broker, reap it once it has exited
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return None
        except ChildProcessError:
            pass
        return pid

    def start(self, wait_s: float = 90.0) -> str:
        """Start the broker and wait until it answers; idempotent. Returns a status line."""
        if self.pid() is not None and broker_ready(self.bootstrap):
            return f"Apache Kafka {self.version} already running on {self.bootstrap}"
        if broker_ready(self.bootstrap):
            raise BrokerError(f"another broker already answers on {self.bootstrap}; "
                              f"stop it, pick another port, or point KAFKA_BOOTSTRAP at it")
        java = _require("java", "run the Kafka broker")
        libs = assemble(self.home, self.version)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        properties = self._write_properties()
        command = [java, f"-Dlog4j.configuration=file:{_DIST / 'log4j.properties'}",
                   f"-Dkafka.logs.file={self.log_file}", "-cp", f"{libs}/*"]
        self._format(command, properties)
        started = time.monotonic()
        with open(self.state_dir / "stdout.log", "ab") as out:
            process = subprocess.Popen(
                command + [f"-Xmx{self.heap}", "-XX:+UseG1GC", "kafka.Kafka", str(properties)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self._pid_file.write_text(str(process.pid))
        while not broker_ready(self.bootstrap):
            if process.poll() is not None:
                raise BrokerError(f"the broker exited with {process.returncode}; "
                                  f"last lines of {self.log_file}:\n{self._log_tail()}")
            if time.monotonic() - started > wait_s:
                self.stop()
                raise BrokerError(f"the broker did not answer within {wait_s:.0f} s; "
                                  f"see {self.log_file}:\n{self._log_tail()}")
            time.sleep(0.2)
        return (f"Apache Kafka {self.running_version()} ready on {self.bootstrap} "
                f"in {time.monotonic() - started:.1f} s (log: {self.log_file})")

    def stop(self, wait_s: float = 30.0) -> str:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after ``wait_s``)."""
        pid = self.pid()
        if pid is None:
            return f"no broker running on {self.bootstrap}"
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
        self._pid_file.unlink(missing_ok=True)
        return f"stopped the broker on {self.bootstrap}"

    def status(self) -> str:
        """One line: running or not, version and address."""
        if self.pid() is None:
            return f"not running ({self.bootstrap})"
        state = "ready" if broker_ready(self.bootstrap) else "starting or unresponsive"
        return f"Apache Kafka {self.running_version()} {state} on {self.bootstrap} (pid {self.pid()})"

    def running_version(self) -> str:
        """The version the broker reports in its log, else the pinned one."""
        found = self.version
        if self.log_file.exists():
            for line in self.log_file.read_text(errors="replace").splitlines():
                if "Kafka version:" in line:
                    found = line.split("Kafka version:", 1)[1].split()[0]
        return found

    def _write_properties(self) -> Path:
        controller = self.controller_port or self.port + 1
        path = self.state_dir / "server.properties"
        sasl = self.sasl_port is not None
        clients = f"PLAINTEXT://127.0.0.1:{self.port}" + (
            f",SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}" if sasl else "")
        path.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller}",
            f"listeners={clients},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners={clients}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,"
            + ("SASL_PLAINTEXT:SASL_PLAINTEXT," if sasl else "") + "CONTROLLER:PLAINTEXT",
            *self._sasl_properties(),
            f"log.dirs={self.state_dir / 'data'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            # Every topic is created on purpose (shared.topics): a misspelt name fails loudly.
            "auto.create.topics.enable=false",
            "",
        ]))
        return path

    def _sasl_properties(self) -> list[str]:
        """The SASL listener's lines of server.properties (none without ``sasl_port``)."""
        if self.sasl_port is None:
            return []
        prefix = "listener.name.sasl_plaintext"
        plain_users = " ".join(f'user_{name}="{password}"' for name, password in self.sasl_users)
        return [
            f"sasl.enabled.mechanisms={','.join(SASL_MECHANISMS)}",
            f"{prefix}.sasl.enabled.mechanisms={','.join(SASL_MECHANISMS)}",
            f"{prefix}.plain.sasl.jaas.config="
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};",
            *(f"{prefix}.{mechanism.lower()}.sasl.jaas.config="
              f"org.apache.kafka.common.security.scram.ScramLoginModule required;"
              for mechanism in SASL_MECHANISMS if mechanism.startswith("SCRAM-")),
        ]

    def _format(self, command: list[str], properties: Path) -> None:
        if (self.state_dir / "data" / "meta.properties").exists():
            return
        cluster_id = subprocess.run(command + ["kafka.tools.StorageTool", "random-uuid"],
                                    capture_output=True, text=True, check=True).stdout.split()[-1]
        scram = [argument for name, password in self.sasl_users
                 for mechanism in SASL_MECHANISMS if mechanism.startswith("SCRAM-")
                 for argument in ("--add-scram", f"{mechanism}=[name={name},password={password}]")]
        result = subprocess.run(
            command + ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(properties)]
            + scram,
            capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{result.stdout}{result.stderr}")

    def _log_tail(self, lines: int = 20) -> str:
        for path in (self.state_dir / "stdout.log", self.log_file):
            if path.exists() and path.stat().st_size:
                return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log written)"


@contextmanager
def ephemeral_broker(home: Path, *, sasl_users: dict[str, str] | None = None):
    """A :class:`LocalBroker` on free ports for one run (tests, benchmarks).

    Yields the started broker; stops it and deletes its storage afterwards.
    The jars under ``home`` are kept for the next run. With ``sasl_users``
    (name -> password) it also opens a SASL_PLAINTEXT listener for them on a
    free port (:attr:`LocalBroker.sasl_bootstrap`).
    """
    broker = LocalBroker(home=home, port=free_port(), controller_port=free_port(),
                         sasl_port=free_port() if sasl_users else None,
                         sasl_users=tuple(sasl_users.items()) if sasl_users else ())
    print(broker.start(), file=sys.stderr)
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(broker.state_dir, ignore_errors=True)


def local_broker(settings: Settings) -> LocalBroker:
    """The project's own broker as configured (``RECSYS_KAFKA_HOME``, ``RECSYS_KAFKA_PORT``)."""
    return LocalBroker(home=Path(settings.kafka_home).expanduser(), port=settings.kafka_port)


def ensure_broker(settings: Settings, environ: Mapping[str, str] = os.environ) -> str:
    """Bootstrap servers to use: those configured (``KAFKA_BOOTSTRAP`` or the configuration
    file's ``kafka_bootstrap``), once they answer (:func:`require_broker`), else the local
    broker's, started (:meth:`LocalBroker.start` returns once it answers).

    Raises
    ------
    BrokerError
        When the configured servers do not answer, or the local broker cannot be started.
    """
    if bootstrap_given(environ):
        source = ("KAFKA_BOOTSTRAP" if "KAFKA_BOOTSTRAP" in environ
                  else f"kafka_bootstrap in {environ[CONFIG_ENV].strip()}")
        require_broker(settings.kafka_bootstrap,
                       security=kafka_security.from_settings(settings, environ),
                       hint=f"is it running, and is {source} right? "
                            f"(`recsys kafka status` shows the local broker)")
        return settings.kafka_bootstrap
    broker = local_broker(settings)
    print(broker.start(), file=sys.stderr)
    return broker.bootstrap


def require_broker(bootstrap: str, *, security: kafka_security.KafkaSecurity | None = None,
                   hint: str = "is it running? (`recsys kafka status`)",
                   connect_timeout_s: float = CONNECT_TIMEOUT_S,
                   metadata_timeout_s: float = METADATA_TIMEOUT_S) -> None:
    """Return once a broker at ``bootstrap`` answers a metadata request, or raise.

    Kafka's clients never give up on an address that refuses them: they retry,
    logging each attempt, until the operation's own timeout (30 s to create a
    topic). A command checks here first, so that a broker that is not there is
    one line at once. First a TCP connection to each bootstrap server, up to
    ``connect_timeout_s`` in all: when none accepts one (refused, unknown host,
    no answer), no client can reach the cluster. Then a metadata request through
    an admin client that connects as ``security`` says (default: the process
    environment's), within ``metadata_timeout_s``: it fails when the address is
    not a Kafka listener or the handshake (TLS, SASL) fails. The client's own log
    lines go to :mod:`shared.kafka_log` at DEBUG; the error says it all.

    Raises
    ------
    BrokerError
        ``no Kafka broker answers at <bootstrap>: <reason>; <hint>``, or, when a
        broker answers but refuses the login or the TLS handshake, ``the Kafka
        broker at <bootstrap> refuses this client: <reason>; ...``.
    """
    refused = _refusal(bootstrap, connect_timeout_s)
    if refused is not None:
        raise BrokerError(f"no Kafka broker answers at {bootstrap}: {refused}; {hint}")
    errors: list[KafkaError] = []
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "error_cb": errors.append,
                              **kafka_security.resolve(security).confluent(),
                              **kafka_log.client_config(logging.DEBUG)}
    admin = AdminClient(config)
    try:
        admin.list_topics(timeout=metadata_timeout_s)
    except KafkaException as exc:
        admin.poll(0)  # serves error_cb and the log lines
        refusals = [e for e in errors if e.code() in _REFUSED]
        if refusals:
            raise BrokerError(f"the Kafka broker at {bootstrap} refuses this client: "
                              f"{_reason(refusals[-1])}; check the RECSYS_KAFKA_* security "
                              f"settings (`recsys config` lists them)") from None
        reasons = [e for e in errors if e.code() not in _ROUTINE] or [exc.args[0]]
        raise BrokerError(f"no Kafka broker answers at {bootstrap}: {_reason(reasons[-1])}; "
                          f"{hint}") from None
    finally:
        admin.poll(0)


#: Errors every failed connection reports along with its cause.
_ROUTINE = (KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT)
#: A broker that answers but does not let this client in (its login or certificate).
_REFUSED = (KafkaError._AUTHENTICATION, KafkaError._SSL)


def _reason(error: KafkaError) -> str:
    """A librdkafka error as its text, without the address it repeats."""
    text = error.str()
    return text.split(": ", 1)[1] if "/bootstrap: " in text else text


def _refusal(bootstrap: str, timeout_s: float) -> str | None:
    """Why no server of ``bootstrap`` accepts a TCP connection, or None when one does (or
    when the list is not one this parses, leaving the judgement to the client)."""
    addresses = _addresses(bootstrap)
    if not addresses:
        return None
    deadline = time.monotonic() + timeout_s
    reason = ""
    for host, port in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.create_connection((host, port), timeout=left):
                return None
        except socket.gaierror as exc:
            reason = f"cannot resolve {host!r} ({exc.strerror})"
        except TimeoutError:
            reason = f"no answer to a connection within {timeout_s:.0f} s"
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
    return reason or f"no answer to a connection within {timeout_s:.0f} s"


def _addresses(bootstrap: str) -> list[tuple[str, int]]:
    """(host, port) of each server in a bootstrap list, as librdkafka reads it (an optional
    ``protocol://``, ``[v6]:port``, port 9092 when none is given); empty when an entry
    does not parse.

    >>> _addresses("a:1, PLAINTEXT://b:2,[::1]:3,c")
    [('a', 1), ('b', 2), ('::1', 3), ('c', 9092)]
    >>> _addresses("a:port")
    []
    """
    found = []
    for entry in bootstrap.split(","):
        entry = entry.strip().rsplit("://", 1)[-1]
        match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", entry)
        if match is None:
            return []
        host = match.group(1) or match.group(3)
        port = match.group(2) or match.group(4) or "9092"
        found.append((host, int(port)))
    return found
