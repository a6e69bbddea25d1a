"""NKEY logins over mutual TLS, as a GPU box on another network would connect.

Nothing here is made by the code under test or by the library it loads with: the
certificates come from the `openssl` command line, and the NKEY seeds are encoded from the
format upstream defines (nats-io/nkeys `strkey.go`, read at commit 559710be98fb: a prefix byte
pair, the 32-byte Ed25519 seed, a CRC-16/XMODEM little-endian, base32 without padding),
with the public key derived by `cryptography`, not by the `nkeys` package the client signs
with. The real `nats-server` verifies both.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.cluster.conftest import WorkerProcess, cluster_toml
from tests.fixtures.services import NatsServer
from tests.probe import MqttProbe

pytest.importorskip("nkeys")  # nats-py signs the server's nonce with it

PREFIX_SEED = 18 << 3  # 'S'
PREFIX_USER = 20 << 3  # 'U'


def _crc16(data: bytes) -> int:
    """CRC-16/XMODEM (polynomial 0x1021, initial 0), as nkeys' crc16.go."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _encode(raw: bytes) -> str:
    return base64.b32encode(raw + _crc16(raw).to_bytes(2, "little")).decode().rstrip("=")


def new_user_nkey() -> tuple[str, str]:
    """(seed "SU…", public key "U…") of a fresh NKEY user."""
    private = os.urandom(32)
    public = Ed25519PrivateKey.from_private_bytes(private).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    seed = _encode(bytes([PREFIX_SEED | (PREFIX_USER >> 5), (PREFIX_USER & 31) << 3]) + private)
    return seed, _encode(bytes([PREFIX_USER]) + public)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed."""
    folder.mkdir()
    paths = {name: folder / f"{name}.pem" for name in
             ("ca", "ca-key", "server", "server-key", "client", "client-key")}
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=cassetted test CA", "-keyout", str(paths["ca-key"]),
             "-out", str(paths["ca"]))
    for who, extension in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                           ("client", "extendedKeyUsage=clientAuth")):
        ext = folder / f"{who}.ext"
        ext.write_text(extension + "\n")
        csr = folder / f"{who}.csr"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}",
                 "-keyout", str(paths[f"{who}-key"]), "-out", str(csr))
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(paths["ca"]),
                 "-CAkey", str(paths["ca-key"]), "-CAcreateserial", "-days", "2",
                 "-extfile", str(ext), "-out", str(paths[who]))
    return paths


class Login:
    """One NKEY user: its seed file (mode 0600, as `nk -gen user > file` leaves it)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.seed, self.public = new_user_nkey()
        self.seed_file = folder / f"{name}.nk"
        self.seed_file.write_text(self.seed + "\n")
        self.seed_file.chmod(0o600)


@pytest.fixture
def tls_nats(tmp_path: Path) -> Iterator[tuple[NatsServer, dict[str, Path], Login, Login]]:
    certs = make_certificates(tmp_path / "certs")
    daemon, worker = Login(tmp_path, "daemon"), Login(tmp_path, "worker")
    config = (
        f'tls {{ cert_file: "{certs["server"]}", key_file: "{certs["server-key"]}", '
        f'ca_file: "{certs["ca"]}", verify: true }}\n'
        f'authorization {{ users: [ {{ nkey: "{daemon.public}" }}, '
        f'{{ nkey: "{worker.public}" }} ] }}\n')
    (tmp_path / "nats").mkdir()
    server = NatsServer(tmp_path / "nats", config=config).start()
    yield server, certs, daemon, worker
    server.stop()


def _tls_url(server: NatsServer) -> str:
    return server.url.replace("nats://", "tls://")


def _status(config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASSETTED_")}
    return subprocess.run([sys.executable, "-m", "cassetted", "cluster", "status", "--config",
                           str(config)], capture_output=True, text=True, timeout=60, env=env,
                          check=False)


def test_nkey_logins_over_mutual_tls_render_a_song(
        daemon_factory: Callable[..., Any], probe: MqttProbe, worker_factory:
        Callable[..., WorkerProcess], tls_nats: tuple[NatsServer, dict[str, Path], Login, Login],
        tmp_path: Path) -> None:
    server, certs, daemon_login, worker_login = tls_nats

    def toml(login: Login, **values: object) -> str:
        return cluster_toml(_tls_url(server), nkey_seed_file=str(login.seed_file),
                            tls_ca_file=str(certs["ca"]), tls_cert_file=str(certs["client"]),
                            tls_key_file=str(certs["client-key"]), **values)

    daemon = daemon_factory(toml(daemon_login, local_workers=0)).start()
    worker = worker_factory("gpu-box", toml(worker_login)).start()
    probe.wait_online()
    reply = probe.command("song/create", {"prompt": "signed and sealed", "duration_s": 10})
    final = probe.wait_job(reply["job_id"], ("done", "failed"), timeout=120)
    assert final["state"] == "done" and final["worker"] == "gpu-box", (
        final, worker.log()[-3000:], server.log.read_text()[-3000:])
    for log in (daemon.log(), worker.log()):
        assert daemon_login.seed not in log and worker_login.seed not in log

    # `cluster status` with the same login sees the worker...
    status_config = tmp_path / "status.toml"
    status_config.write_text(toml(daemon_login))
    seen = _status(status_config)
    assert seen.returncode == 0 and "gpu-box" in seen.stdout, seen

    # ...and each missing piece is refused by the server, said in one line, seed unsaid.
    unknown = Login(tmp_path, "stranger")
    for broken, says in (
            (cluster_toml(_tls_url(server), nkey_seed_file=str(unknown.seed_file),
                          tls_ca_file=str(certs["ca"]), tls_cert_file=str(certs["client"]),
                          tls_key_file=str(certs["client-key"])), "Authorization Violation"),
            (cluster_toml(_tls_url(server), nkey_seed_file=str(daemon_login.seed_file),
                          tls_ca_file=str(certs["ca"])), "set [cluster] tls_cert_file"),
            (cluster_toml(_tls_url(server), nkey_seed_file=str(daemon_login.seed_file)),
             "set [cluster] tls_ca_file")):
        status_config.write_text(broken)
        refused = _status(status_config)
        assert refused.returncode == 1, (says, refused)
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot read the cluster" in lines[0], refused.stderr
        assert says in lines[0], refused.stderr
        for login in (unknown, daemon_login):
            assert login.seed not in refused.stderr + refused.stdout
