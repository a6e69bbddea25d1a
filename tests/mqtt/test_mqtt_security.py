"""TLS and username/password against a private Mosquitto configured for both."""

from __future__ import annotations

import datetime
import ssl
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import BROKER_HOST
from tests.fixtures.services import free_port, start_mosquitto, stop_process


def _cert(subject: str, issuer_key, issuer_name, key, ca: bool, san: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        import ipaddress

        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture
def secure_broker(tmp_path: Path):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("cassetted test CA", ca_key, None, ca_key, ca=True, san=False)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("127.0.0.1", ca_key, ca.subject, key, ca=False, san=True)
    ca_file = _pem(tmp_path / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    cert_file = _pem(tmp_path / "server.pem", cert.public_bytes(serialization.Encoding.PEM))
    key_file = _pem(tmp_path / "server.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    port = free_port()
    proc = start_mosquitto(port, tmp_path, logins={"cassetted": "s3cret-pw"},
                           extra=f"cafile {ca_file}\ncertfile {cert_file}\nkeyfile {key_file}\n")
    yield port, ca_file
    stop_process(proc)


def _tls_probe(port: int, ca_file: Path, base: str) -> tuple[mqtt.Client, list]:
    seen: list = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set("cassetted", "s3cret-pw")
    client.tls_set(ca_certs=str(ca_file), cert_reqs=ssl.CERT_REQUIRED)
    client.on_message = lambda c, u, m: seen.append((m.topic, m.payload))
    client.connect(BROKER_HOST, port)
    client.loop_start()
    client.subscribe(f"{base}/#", qos=1)
    return client, seen


def _wait(seen: list, predicate, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for item in list(seen):
            if predicate(item):
                return item
        time.sleep(0.05)
    raise TimeoutError(seen[-5:])


def test_tls_with_password(daemon_factory, secure_broker, base_topic: str) -> None:
    port, ca_file = secure_broker
    daemon = daemon_factory(port=port, CASSETTED_MQTT__TLS="true",
                            CASSETTED_MQTT__CA_CERTS=str(ca_file),
                            CASSETTED_MQTT__USERNAME="cassetted",
                            CASSETTED_MQTT__PASSWORD="s3cret-pw").start()
    client, seen = _tls_probe(port, ca_file, base_topic)
    try:
        _wait(seen, lambda m: m == (f"{base_topic}/status", b"online"))
        client.publish(f"{base_topic}/song/create",
                       b'{"duration_s": 10, "reply_to": "' + base_topic.encode() + b'/r"}', qos=1)
        _wait(seen, lambda m: m[0] == f"{base_topic}/r" and b'"ok":true' in m[1])
    finally:
        client.loop_stop()
        client.disconnect()
    daemon.stop()
    assert "s3cret-pw" not in daemon.log()


def test_wrong_password_keeps_retrying_without_leaking(daemon_factory, secure_broker) -> None:
    port, ca_file = secure_broker
    daemon = daemon_factory(port=port, CASSETTED_MQTT__TLS="true",
                            CASSETTED_MQTT__CA_CERTS=str(ca_file),
                            CASSETTED_MQTT__USERNAME="cassetted",
                            CASSETTED_MQTT__PASSWORD="wrong-pw-123").start()
    time.sleep(3)
    assert daemon.proc.poll() is None
    log = daemon.log()
    assert "unavailable" in log and "wrong-pw-123" not in log
