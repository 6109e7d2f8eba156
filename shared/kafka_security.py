"""How every Kafka client of the project connects: TLS, SASL, both or neither.

One :class:`KafkaSecurity` is built from the settings (``RECSYS_KAFKA_SECURITY_PROTOCOL``
and the ``RECSYS_KAFKA_SASL_*`` / ``RECSYS_KAFKA_SSL_*`` variables) and turned into
each client's own options:

* :meth:`KafkaSecurity.confluent`: keys of a confluent-kafka (librdkafka)
  ``Producer``, ``Consumer`` or ``AdminClient`` configuration;
* :meth:`KafkaSecurity.aiokafka`: keyword arguments of ``AIOKafkaConsumer`` /
  ``AIOKafkaProducer``;
* :meth:`KafkaSecurity.faust_credentials`: Faust's ``broker_credentials``, which
  faust-streaming hands to aiokafka for the worker's consumer (and for the topics
  it creates through that consumer); the worker's librdkafka producer reads the
  same object back with :func:`from_faust_credentials`.

With the defaults (``PLAINTEXT``, nothing else set) every fragment is empty and
``faust_credentials`` is None, so clients are configured exactly as without this
module.

Functions that build a client deep inside a job (``shared.topics.ensure_topics``,
``batch.produce.producer_config``, ``batch.retrain.announce``, the event-log reader)
take an optional ``security``; without one they use :func:`from_environ`, the
security of the process environment, which is where every entry point reads its
settings from. So each client of a process connects the same way without the
security being handed down through every call.

Secrets are not :class:`~shared.config.Settings` fields, so neither ``recsys config``
nor a repr of the settings can show them. The SASL password is read when the
security is built, from ``RECSYS_KAFKA_SASL_PASSWORD`` or from the file named by
``RECSYS_KAFKA_SASL_PASSWORD_FILE`` (one of the two; a trailing line break in the
file is not part of the password); the private key's password likewise from
``RECSYS_KAFKA_SSL_KEY_PASSWORD`` or ``RECSYS_KAFKA_SSL_KEY_PASSWORD_FILE``.

A combination that cannot work, or would silently not do what it says (a
username without a SASL protocol, a CA file with a protocol without TLS, a file
that does not exist, a PEM that does not load), raises
:class:`~shared.config.ConfigError` naming the variable to fix.

Example
-------
>>> security = from_environ({"RECSYS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
...                          "RECSYS_KAFKA_SASL_USERNAME": "worker",
...                          "RECSYS_KAFKA_SASL_PASSWORD": "s3cret"})
>>> security.confluent()["sasl.mechanism"], security.aiokafka()["security_protocol"]
('PLAIN', 'SASL_PLAINTEXT')
>>> "s3cret" in repr(security)
False
>>> from_environ({}).confluent(), from_environ({}).faust_credentials()
({}, None)
"""
from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.config import ConfigError, Settings, load_settings

#: Values of RECSYS_KAFKA_SECURITY_PROTOCOL, as Kafka's clients name them.
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
#: Values of RECSYS_KAFKA_SASL_MECHANISM (GSSAPI and OAUTHBEARER are not supported).
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: The mechanism of a SASL protocol when RECSYS_KAFKA_SASL_MECHANISM is not set.
DEFAULT_MECHANISM = "PLAIN"

PROTOCOL_ENV = "RECSYS_KAFKA_SECURITY_PROTOCOL"
MECHANISM_ENV = "RECSYS_KAFKA_SASL_MECHANISM"
USERNAME_ENV = "RECSYS_KAFKA_SASL_USERNAME"
PASSWORD_ENV = "RECSYS_KAFKA_SASL_PASSWORD"
PASSWORD_FILE_ENV = "RECSYS_KAFKA_SASL_PASSWORD_FILE"
CA_FILE_ENV = "RECSYS_KAFKA_SSL_CA_FILE"
CERT_FILE_ENV = "RECSYS_KAFKA_SSL_CERT_FILE"
KEY_FILE_ENV = "RECSYS_KAFKA_SSL_KEY_FILE"
KEY_PASSWORD_ENV = "RECSYS_KAFKA_SSL_KEY_PASSWORD"
KEY_PASSWORD_FILE_ENV = "RECSYS_KAFKA_SSL_KEY_PASSWORD_FILE"

#: Settings fields this module reads (the secrets themselves are read from the environment).
_FIELDS = ("kafka_security_protocol", "kafka_sasl_mechanism", "kafka_sasl_username",
           "kafka_sasl_password_file", "kafka_ssl_ca_file", "kafka_ssl_cert_file",
           "kafka_ssl_key_file", "kafka_ssl_key_password_file")


@dataclass(frozen=True)
class KafkaSecurity:
    """A validated way of connecting to the cluster; see the module docstring.

    Build it with :func:`from_settings` or :func:`from_environ`, which check the
    combination; the constructor itself takes the values as given (``mechanism``
    is the effective one, so ``PLAIN`` under a SASL protocol when none was set).
    The passwords are left out of the repr.
    """

    protocol: str = "PLAINTEXT"
    mechanism: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    key_password: str = field(default="", repr=False)

    @property
    def sasl(self) -> bool:
        """Whether the client authenticates with SASL (SASL_PLAINTEXT, SASL_SSL)."""
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted (SSL, SASL_SSL)."""
        return self.protocol in ("SSL", "SASL_SSL")

    def confluent(self) -> dict[str, Any]:
        """Keys to merge into a confluent-kafka client's configuration (empty for PLAINTEXT)."""
        if self.protocol == "PLAINTEXT":
            return {}
        config: dict[str, Any] = {"security.protocol": self.protocol}
        if self.sasl:
            config.update({"sasl.mechanism": self.mechanism, "sasl.username": self.username,
                           "sasl.password": self.password})
        if self.tls:
            if self.ca_file:
                config["ssl.ca.location"] = self.ca_file
            if self.cert_file:
                config["ssl.certificate.location"] = self.cert_file
                config["ssl.key.location"] = self.key_file
            if self.key_password:
                config["ssl.key.password"] = self.key_password
        return config

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments of an aiokafka client (empty for PLAINTEXT)."""
        if self.protocol == "PLAINTEXT":
            return {}
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.sasl:
            kwargs.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                          sasl_plain_password=self.password)
        if self.tls:
            kwargs["ssl_context"] = self.ssl_context()
        return kwargs

    def faust_credentials(self):
        """Faust's ``broker_credentials``: None for PLAINTEXT, else ``faust.SSLCredentials`` or
        ``faust.SASLCredentials`` (with an SSL context for SASL_SSL).

        The object carries this security as its ``kafka_security`` attribute, so
        the librdkafka producer (:func:`from_faust_credentials`) connects exactly
        as the aiokafka consumer that Faust builds from it.
        """
        if self.protocol == "PLAINTEXT":
            return None
        import faust

        credentials: faust.SASLCredentials | faust.SSLCredentials
        if self.sasl:
            credentials = faust.SASLCredentials(
                username=self.username, password=self.password, mechanism=self.mechanism,
                ssl_context=self.ssl_context() if self.tls else None)
        else:
            credentials = faust.SSLCredentials(self.ssl_context())
        assert credentials.protocol.value == self.protocol, (credentials.protocol, self.protocol)
        # Faust's credential classes declare no such attribute; from_faust_credentials reads
        # it back with getattr.
        setattr(credentials, "kafka_security", self)
        return credentials

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context (``aiokafka.helpers.create_ssl_context``): the brokers'
        certificates are verified against ``ca_file`` (else the system's trust store)
        with their host names checked; ``cert_file`` / ``key_file`` for mutual TLS.

        Raises
        ------
        ConfigError
            When a file does not load, naming its variable.
        """
        from aiokafka.helpers import create_ssl_context

        try:
            context = create_ssl_context(cafile=self.ca_file or None)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"{CA_FILE_ENV}={self.ca_file!r} does not load as PEM CA "
                              f"certificates: {exc}") from None
        if self.cert_file:
            try:
                context.load_cert_chain(self.cert_file, self.key_file,
                                        password=self.key_password or None)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(
                    f"{CERT_FILE_ENV}={self.cert_file!r} and {KEY_FILE_ENV}={self.key_file!r} "
                    f"do not load as a PEM certificate and its private key (an encrypted key "
                    f"needs {KEY_PASSWORD_ENV} or {KEY_PASSWORD_FILE_ENV}): {exc}") from None
        return context


def from_settings(settings: Settings, environ: Mapping[str, str] | None = None
                  ) -> KafkaSecurity:
    """The security ``settings`` describe, with the passwords from ``environ``
    (default ``os.environ``) or their files.

    Raises
    ------
    ConfigError
        When the combination cannot work or a file is missing or does not load;
        the message names the variable to fix.
    """
    environ = os.environ if environ is None else environ
    protocol = settings.kafka_security_protocol
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{PROTOCOL_ENV}={protocol!r} is not one of {', '.join(PROTOCOLS)}")
    mechanism = settings.kafka_sasl_mechanism
    if mechanism and mechanism not in MECHANISMS:
        raise ConfigError(f"{MECHANISM_ENV}={mechanism!r} is not one of {', '.join(MECHANISMS)}")
    sasl, tls = protocol.startswith("SASL_"), protocol in ("SSL", "SASL_SSL")

    password = _secret(environ, PASSWORD_ENV, PASSWORD_FILE_ENV, settings.kafka_sasl_password_file)
    if not sasl:
        _refuse_unused(protocol, "SASL", "SASL_PLAINTEXT or SASL_SSL", (
            (MECHANISM_ENV, mechanism), (USERNAME_ENV, settings.kafka_sasl_username),
            (PASSWORD_FILE_ENV, settings.kafka_sasl_password_file), (PASSWORD_ENV, password)))
    else:
        if not settings.kafka_sasl_username:
            raise ConfigError(f"{USERNAME_ENV} is not set; {PROTOCOL_ENV}={protocol} "
                              f"(mechanism {mechanism or DEFAULT_MECHANISM}) needs a username")
        if not password:
            raise ConfigError(f"no SASL password: set {PASSWORD_ENV} or {PASSWORD_FILE_ENV} "
                              f"({PROTOCOL_ENV}={protocol})")

    ca_file = _path(CA_FILE_ENV, settings.kafka_ssl_ca_file)
    cert_file = _path(CERT_FILE_ENV, settings.kafka_ssl_cert_file)
    key_file = _path(KEY_FILE_ENV, settings.kafka_ssl_key_file)
    key_password = _secret(environ, KEY_PASSWORD_ENV, KEY_PASSWORD_FILE_ENV,
                           settings.kafka_ssl_key_password_file)
    if not tls:
        _refuse_unused(protocol, "TLS", "SSL or SASL_SSL", (
            (CA_FILE_ENV, ca_file), (CERT_FILE_ENV, cert_file), (KEY_FILE_ENV, key_file),
            (KEY_PASSWORD_FILE_ENV, settings.kafka_ssl_key_password_file),
            (KEY_PASSWORD_ENV, key_password)))
    elif bool(cert_file) != bool(key_file):
        missing = KEY_FILE_ENV if cert_file else CERT_FILE_ENV
        raise ConfigError(f"{missing} is not set; a client certificate (mutual TLS) needs both "
                          f"{CERT_FILE_ENV} and {KEY_FILE_ENV}")
    elif key_password and not key_file:
        raise ConfigError(f"{KEY_PASSWORD_ENV} or {KEY_PASSWORD_FILE_ENV} is set without "
                          f"{KEY_FILE_ENV}; unset it or name the key")

    security = KafkaSecurity(
        protocol=protocol, mechanism=(mechanism or DEFAULT_MECHANISM) if sasl else "",
        username=settings.kafka_sasl_username if sasl else "", password=password,
        ca_file=ca_file, cert_file=cert_file, key_file=key_file, key_password=key_password)
    if tls:
        security.ssl_context()  # a PEM that does not load fails here, for every kind of client
    return security


def from_environ(environ: Mapping[str, str] | None = None) -> KafkaSecurity:
    """The security of the process environment (default ``os.environ``).

    Reads only the security variables (parsed and checked as :func:`load_settings`
    does), so an unrelated malformed setting does not stop a client from being built.
    """
    environ = os.environ if environ is None else environ
    fields = {f.name: f.metadata["env"] for f in dataclasses.fields(Settings)}
    names = {fields[name] for name in _FIELDS}
    return from_settings(load_settings({k: v for k, v in environ.items() if k in names}), environ)


def resolve(security: KafkaSecurity | None) -> KafkaSecurity:
    """``security`` when given, else :func:`from_environ`: what a function that builds a
    client uses when its caller does not say how to connect."""
    return from_environ() if security is None else security


def from_faust_credentials(credentials, ssl_context: ssl.SSLContext | None = None
                           ) -> KafkaSecurity:
    """The security a Faust app's ``broker_credentials`` (and ``ssl_context``) stand for.

    None for both is PLAINTEXT; credentials made by :meth:`KafkaSecurity.faust_credentials`
    give back their security. Anything else cannot be turned into librdkafka's
    options (an SSL context does not say which files it was loaded from).

    Raises
    ------
    ConfigError
        For credentials or an SSL context not made by this module.
    """
    if credentials is None and ssl_context is None:
        return KafkaSecurity()
    security = getattr(credentials, "kafka_security", None)
    if not isinstance(security, KafkaSecurity):
        raise ConfigError(
            f"the Faust app's broker_credentials ({credentials!r}) or ssl_context were not made "
            f"by shared.kafka_security, so the librdkafka producer cannot connect the same way; "
            f"configure Kafka security with {PROTOCOL_ENV} and the RECSYS_KAFKA_SASL_*/SSL_* "
            f"settings")
    return security


def _refuse_unused(protocol: str, layer: str, protocols: str, settings) -> None:
    """A ConfigError for the first of ``settings`` ((env, value) pairs) that is set although
    ``protocol`` does not use ``layer`` (SASL or TLS), so it would be ignored."""
    for env, value in settings:
        if value:
            raise ConfigError(
                f"{env} is set but {PROTOCOL_ENV}={protocol} does not use {layer}, so it would "
                f"be ignored; set {PROTOCOL_ENV} to {protocols}, or unset {env}")


def _secret(environ: Mapping[str, str], env: str, file_env: str, file_value: str) -> str:
    """A secret from ``env`` or from the file named by the ``file_env`` setting (not both)."""
    direct = environ.get(env, "")
    if not file_value:
        return direct
    if direct:
        raise ConfigError(f"both {env} and {file_env} are set; unset one of them")
    path = Path(file_value).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{file_env}={file_value!r} cannot be read: {exc.strerror}") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise ConfigError(f"{file_env}={file_value!r} is empty")
    return secret


def _path(env: str, value: str) -> str:
    """``value`` with ``~`` expanded, when it names a readable file ('' stays '')."""
    if not value:
        return ""
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"{env}={value!r} is not a file")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{env}={value!r} cannot be read by this user")
    return str(path)
