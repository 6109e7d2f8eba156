"""From the Kafka security settings to each client's options, and the combinations refused."""
from __future__ import annotations

import shutil
import ssl
import subprocess

import faust
import pytest
from confluent_kafka import Producer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from batch.produce import PRODUCER_CONFIG, producer_config
from shared import kafka_security
from shared.config import ConfigError, load_settings
from shared.kafka_security import KafkaSecurity, from_environ, from_faust_credentials

SASL = {"RECSYS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "RECSYS_KAFKA_SASL_USERNAME": "worker", "RECSYS_KAFKA_SASL_PASSWORD": "pw-1"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a client certificate it signed with its key, that key encrypted, and junk."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not on PATH")
    d = tmp_path_factory.mktemp("pki")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=test-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
            "-subj", "/CN=worker")
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "client.pem", "-days", "2")
    openssl("pkey", "-in", "client.key", "-aes256", "-passout", "pass:key-pw",
            "-out", "client-encrypted.key")
    (d / "junk.pem").write_text("not a certificate\n")
    return d


def _error(environ) -> str:
    with pytest.raises(ConfigError) as caught:
        from_environ(environ)
    return str(caught.value)


def test_defaults_leave_every_client_as_it_was():
    security = from_environ({})
    assert security == KafkaSecurity() and security.protocol == "PLAINTEXT"
    assert security.confluent() == {} and security.aiokafka() == {}
    assert security.faust_credentials() is None
    assert from_faust_credentials(None) == security
    assert producer_config("b:9092", security=security) == {**PRODUCER_CONFIG,
                                                            "bootstrap.servers": "b:9092"}


def test_settings_checks_accept_exactly_the_supported_values():
    for protocol in kafka_security.PROTOCOLS:
        assert load_settings({"RECSYS_KAFKA_SECURITY_PROTOCOL": protocol}).kafka_security_protocol \
            == protocol
    for mechanism in kafka_security.MECHANISMS:
        assert load_settings({"RECSYS_KAFKA_SASL_MECHANISM": mechanism}).kafka_sasl_mechanism \
            == mechanism
    assert "RECSYS_KAFKA_SECURITY_PROTOCOL" in _error({"RECSYS_KAFKA_SECURITY_PROTOCOL": "sasl"})
    assert "RECSYS_KAFKA_SASL_MECHANISM" in _error(
        {**SASL, "RECSYS_KAFKA_SASL_MECHANISM": "GSSAPI"})


def test_sasl_plaintext_maps_to_each_client():
    security = from_environ(SASL)
    assert security.mechanism == "PLAIN"
    assert security.confluent() == {"security.protocol": "SASL_PLAINTEXT",
                                    "sasl.mechanism": "PLAIN", "sasl.username": "worker",
                                    "sasl.password": "pw-1"}
    assert security.aiokafka() == {"security_protocol": "SASL_PLAINTEXT",
                                   "sasl_mechanism": "PLAIN", "sasl_plain_username": "worker",
                                   "sasl_plain_password": "pw-1"}
    credentials = security.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.protocol.value, credentials.mechanism.value, credentials.username,
            credentials.password, credentials.ssl_context) == (
        "SASL_PLAINTEXT", "PLAIN", "worker", "pw-1", None)
    # What faust-streaming hands its aiokafka consumer is what aiokafka() gives other clients.
    assert credentials_to_aiokafka_auth(credentials) == {**security.aiokafka(), "ssl_context": None}
    assert from_faust_credentials(credentials) is security
    assert producer_config("b:9092", security=security, **{"linger.ms": 1}) == {
        **PRODUCER_CONFIG, "bootstrap.servers": "b:9092", **security.confluent(), "linger.ms": 1}


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_mechanisms_pass_through(mechanism):
    security = from_environ({**SASL, "RECSYS_KAFKA_SASL_MECHANISM": mechanism})
    assert security.confluent()["sasl.mechanism"] == mechanism
    assert security.aiokafka()["sasl_mechanism"] == mechanism
    assert security.faust_credentials().mechanism.value == mechanism


def test_password_from_a_file_without_its_line_break_and_never_in_a_repr(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    environ = {**SASL, "RECSYS_KAFKA_SASL_PASSWORD_FILE": str(secret)}
    del environ["RECSYS_KAFKA_SASL_PASSWORD"]
    security = from_environ(environ)
    assert security.password == "from-file"
    assert "from-file" not in repr(security)
    assert "from-file" not in repr(security.faust_credentials())
    # The password is not a setting, so `recsys config` cannot list it.
    listed = {env: value for _, env, value, _ in load_settings(environ).describe()}
    assert "RECSYS_KAFKA_SASL_PASSWORD" not in listed
    assert listed["RECSYS_KAFKA_SASL_PASSWORD_FILE"] == str(secret)


def test_resolve_reads_the_process_environment(monkeypatch):
    for env, value in SASL.items():
        monkeypatch.setenv(env, value)
    assert kafka_security.resolve(None) == from_environ(SASL)
    explicit = KafkaSecurity()
    assert kafka_security.resolve(explicit) is explicit


def test_an_unrelated_bad_setting_does_not_stop_a_client():
    assert from_environ({**SASL, "RECSYS_ALS_FACTORS": "many"}).username == "worker"


def test_sasl_ssl_and_mutual_tls_with_real_pem_files(pki):
    environ = {**SASL, "RECSYS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
               "RECSYS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
               "RECSYS_KAFKA_SSL_CA_FILE": str(pki / "ca.pem"),
               "RECSYS_KAFKA_SSL_CERT_FILE": str(pki / "client.pem"),
               "RECSYS_KAFKA_SSL_KEY_FILE": str(pki / "client.key")}
    security = from_environ(environ)
    assert security.confluent() == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "worker", "sasl.password": "pw-1",
        "ssl.ca.location": str(pki / "ca.pem"), "ssl.certificate.location": str(pki / "client.pem"),
        "ssl.key.location": str(pki / "client.key")}
    context = security.aiokafka()["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    credentials = security.faust_credentials()
    assert credentials.protocol.value == "SASL_SSL" and credentials.ssl_context is not None
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SASL_SSL"
    # librdkafka loads the files when the client is made: a bad one would raise here.
    Producer({"bootstrap.servers": "127.0.0.1:1", **security.confluent()})


def test_ssl_with_an_encrypted_key(pki, tmp_path):
    key_password = tmp_path / "key-password"
    key_password.write_text("key-pw\n")
    environ = {"RECSYS_KAFKA_SECURITY_PROTOCOL": "SSL",
               "RECSYS_KAFKA_SSL_CA_FILE": str(pki / "ca.pem"),
               "RECSYS_KAFKA_SSL_CERT_FILE": str(pki / "client.pem"),
               "RECSYS_KAFKA_SSL_KEY_FILE": str(pki / "client-encrypted.key"),
               "RECSYS_KAFKA_SSL_KEY_PASSWORD_FILE": str(key_password)}
    security = from_environ(environ)
    assert security.confluent()["ssl.key.password"] == "key-pw"
    assert "sasl.username" not in security.confluent()
    assert set(security.aiokafka()) == {"security_protocol", "ssl_context"}
    credentials = security.faust_credentials()
    assert isinstance(credentials, faust.SSLCredentials) and credentials.protocol.value == "SSL"
    assert from_faust_credentials(credentials) is security
    Producer({"bootstrap.servers": "127.0.0.1:1", **security.confluent()})
    del environ["RECSYS_KAFKA_SSL_KEY_PASSWORD_FILE"]
    assert "RECSYS_KAFKA_SSL_KEY_PASSWORD" in _error(environ)


def test_ssl_without_a_ca_file_uses_the_system_trust_store():
    security = from_environ({"RECSYS_KAFKA_SECURITY_PROTOCOL": "SSL"})
    assert security.confluent() == {"security.protocol": "SSL"}
    assert security.aiokafka()["ssl_context"].verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("environ, named", [
    ({"RECSYS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "RECSYS_KAFKA_SASL_USERNAME"),
    ({"RECSYS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RECSYS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
      "RECSYS_KAFKA_SASL_PASSWORD": "x"}, "RECSYS_KAFKA_SASL_USERNAME"),
    ({"RECSYS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "RECSYS_KAFKA_SASL_USERNAME": "u"},
     "RECSYS_KAFKA_SASL_PASSWORD"),
    ({"RECSYS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"}, "RECSYS_KAFKA_SECURITY_PROTOCOL"),
    ({"RECSYS_KAFKA_SASL_USERNAME": "u"}, "RECSYS_KAFKA_SASL_USERNAME"),
    ({"RECSYS_KAFKA_SECURITY_PROTOCOL": "SSL", "RECSYS_KAFKA_SASL_PASSWORD": "x"},
     "RECSYS_KAFKA_SASL_PASSWORD"),
    ({**SASL, "RECSYS_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/password"},
     "RECSYS_KAFKA_SASL_PASSWORD_FILE"),
    ({"RECSYS_KAFKA_SECURITY_PROTOCOL": "SSL", "RECSYS_KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"},
     "RECSYS_KAFKA_SSL_CA_FILE"),
    ({"RECSYS_KAFKA_SSL_CA_FILE": __file__}, "RECSYS_KAFKA_SECURITY_PROTOCOL"),
    ({**SASL, "RECSYS_KAFKA_SSL_KEY_PASSWORD": "x"}, "RECSYS_KAFKA_SSL_KEY_PASSWORD"),
])
def test_bad_combinations_name_the_variable_to_fix(environ, named):
    assert named in _error(environ)


def test_both_password_sources_or_an_empty_file_are_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    both = _error({**SASL, "RECSYS_KAFKA_SASL_PASSWORD_FILE": str(empty)})
    assert "RECSYS_KAFKA_SASL_PASSWORD and RECSYS_KAFKA_SASL_PASSWORD_FILE" in both
    environ = {**SASL, "RECSYS_KAFKA_SASL_PASSWORD_FILE": str(empty)}
    del environ["RECSYS_KAFKA_SASL_PASSWORD"]
    assert "RECSYS_KAFKA_SASL_PASSWORD_FILE" in _error(environ) and "empty" in _error(environ)


def test_unusable_pem_files_name_their_variable(pki):
    tls = {"RECSYS_KAFKA_SECURITY_PROTOCOL": "SSL"}
    assert "RECSYS_KAFKA_SSL_CA_FILE" in _error(
        {**tls, "RECSYS_KAFKA_SSL_CA_FILE": str(pki / "junk.pem")})
    assert "RECSYS_KAFKA_SSL_KEY_FILE" in _error(
        {**tls, "RECSYS_KAFKA_SSL_CERT_FILE": str(pki / "client.pem")})
    assert "RECSYS_KAFKA_SSL_CERT_FILE" in _error(
        {**tls, "RECSYS_KAFKA_SSL_KEY_FILE": str(pki / "client.key")})
    mismatched = _error({**tls, "RECSYS_KAFKA_SSL_CERT_FILE": str(pki / "ca.pem"),
                         "RECSYS_KAFKA_SSL_KEY_FILE": str(pki / "client.key")})
    assert "RECSYS_KAFKA_SSL_CERT_FILE" in mismatched


def test_faust_credentials_not_made_here_are_refused_for_the_librdkafka_producer():
    with pytest.raises(ConfigError, match="broker_credentials"):
        from_faust_credentials(faust.SASLCredentials(username="u", password="p"))
    with pytest.raises(ConfigError, match="broker_credentials"):
        from_faust_credentials(None, ssl.create_default_context())
