"""`cassetted keys`: parsed by the real argparse tree `register` builds, handlers called
directly, and once through `python -m cassetted` as a subprocess."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys

import pytest

from cassetted._app import keys as keys_cli
from cassetted.store.credentials import ENV_KEY, CredentialStore
from cassetted.store.database import open_database

SECRET = "sk-cli-9XbQ7m1LpZ0secret"


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch):
    monkeypatch.delenv(ENV_KEY, raising=False)
    monkeypatch.delenv("CASSETTED_STATE_DIR", raising=False)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "cassetted.toml"
    path.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    return path


def parse(*argv: str) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH")
    parser = argparse.ArgumentParser(prog="cassetted")
    keys_cli.register(parser.add_subparsers(dest="command", required=True), common)
    return parser.parse_args(list(argv))


def run(monkeypatch, *argv: str, stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    args = parse(*argv)
    return args.handler(args)


def test_set_list_delete(monkeypatch, config, tmp_path, capsys):
    assert run(monkeypatch, "keys", "set", "openai", "--config", str(config), stdin=SECRET + "\n") == 0
    assert run(monkeypatch, "keys", "set", "comet", "--user", "alice", "--config", str(config),
               stdin="other\n") == 0
    assert run(monkeypatch, "keys", "list", "--config", str(config)) == 0
    out = capsys.readouterr().out
    assert "openai" in out and "(household)" in out and "comet" in out and "alice" in out
    assert SECRET not in out and SECRET[:6] not in out and "other" not in out
    open_database(None, tmp_path / "state")
    assert CredentialStore.open(tmp_path / "state").get("openai").reveal() == SECRET
    assert run(monkeypatch, "keys", "delete", "comet", "--user", "alice", "--config", str(config)) == 0
    assert run(monkeypatch, "keys", "delete", "comet", "--user", "alice", "--config", str(config)) == 1
    assert (tmp_path / "state" / "secret.key").exists()


def test_secret_is_not_an_argument():
    with pytest.raises(SystemExit):
        parse("keys", "set", "openai", SECRET)


def test_empty_secret_refused(monkeypatch, config, capsys):
    assert run(monkeypatch, "keys", "set", "openai", "--config", str(config), stdin="\n") == 2
    assert "empty" in capsys.readouterr().err


def test_rotate(monkeypatch, config, tmp_path, capsys):
    run(monkeypatch, "keys", "set", "openai", "--config", str(config), stdin=SECRET)
    before = (tmp_path / "state" / "secret.key").read_text()
    assert run(monkeypatch, "keys", "rotate", "--config", str(config)) == 0
    assert run(monkeypatch, "keys", "rotate", "--new-key", "--config", str(config)) == 0
    assert (tmp_path / "state" / "secret.key").read_text() != before
    assert "re-encrypted 1 key(s)" in capsys.readouterr().out
    open_database(None, tmp_path / "state")
    assert CredentialStore.open(tmp_path / "state").get("openai").reveal() == SECRET


def test_wrong_key_reports_without_secret(monkeypatch, config, tmp_path, capsys):
    run(monkeypatch, "keys", "set", "openai", "--config", str(config), stdin=SECRET)
    (tmp_path / "state" / "secret.key").write_text(
        __import__("cryptography.fernet").fernet.Fernet.generate_key().decode())
    assert run(monkeypatch, "keys", "rotate", "--config", str(config)) == 1
    err = capsys.readouterr().err
    assert "cannot decrypt" in err and SECRET not in err


def test_python_m_cassetted_keys(config, tmp_path):
    """The real entry point: `python -m cassetted keys ...` through cli.py's full parser."""
    env = {k: v for k, v in os.environ.items() if k not in (ENV_KEY, "CASSETTED_STATE_DIR")}

    def cli(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cassetted", "keys", *argv, "--config", str(config)],
                              input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False)

    stored = cli("set", "openai", "--user", "alice", stdin=SECRET + "\n")
    assert stored.returncode == 0, stored.stderr
    assert "stored openai key for user alice" in stored.stdout
    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "openai" in listed.stdout and "alice" in listed.stdout
    for output in (stored.stdout, stored.stderr, listed.stdout, listed.stderr):
        assert SECRET not in output and SECRET[:8] not in output
    open_database(None, tmp_path / "state")
    assert CredentialStore.open(tmp_path / "state").get("openai", "alice").reveal() == SECRET
    deleted = cli("delete", "openai", "--user", "alice")
    assert deleted.returncode == 0, deleted.stderr
    assert cli("list").stdout.strip() == "no keys stored"
    assert cli("delete", "openai", "--user", "alice").returncode == 1
