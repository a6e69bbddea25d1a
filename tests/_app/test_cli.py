"""The command line: generate (no broker), request (against a running daemon), schemas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mutagen
import soundfile

from tests.probe import MqttProbe


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASSETTED_")}
    env.update(CASSETTED_STATE_DIR=str(tmp_path / "state"), **extra)
    return env


def test_generate_writes_a_tagged_file(tmp_path: Path) -> None:
    out = tmp_path / "cat.flac"
    result = subprocess.run(
        [sys.executable, "-m", "cassetted", "generate", "a song about my cat", "-o", str(out),
         "--genre", "jazz", "--mood", "relaxing", "--bpm", "100", "--key", "G major",
         "--duration", "11", "--seed", "42"],
        env=_env(tmp_path), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["file"] == str(out) and report["bpm"] == 100 and report["key"] == "G major"
    data, rate = soundfile.read(out)
    assert data.shape == (11 * rate, 2)
    tags = mutagen.File(out)
    assert tags["genre"] == ["jazz"] and tags["title"] == [report["title"]]
    assert "cat" in tags["lyrics"][0].lower()


def test_generate_lyrics_file_and_bad_values(tmp_path: Path) -> None:
    lyrics = tmp_path / "lyrics.txt"
    lyrics.write_text("[Verse]\nOwn words here\n")
    out = tmp_path / "mine.wav"
    ok = subprocess.run([sys.executable, "-m", "cassetted", "generate", "mine", "-o", str(out),
                         "--duration", "10", "--lyrics-file", str(lyrics)],
                        env=_env(tmp_path), capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["lyrics"] == "[Verse]\nOwn words here"
    assert soundfile.info(out).format == "WAV"
    bad = subprocess.run([sys.executable, "-m", "cassetted", "generate", "x", "-o", str(out),
                          "--bpm", "999"], env=_env(tmp_path), capture_output=True, text=True,
                         timeout=60, check=False)
    assert bad.returncode == 2 and "bpm" in bad.stderr


def test_request_follows_the_job_and_prints_the_file(daemon_factory, probe: MqttProbe,
                                                     broker_port: int, tmp_path: Path) -> None:
    daemon_factory().start()
    probe.wait_online()
    env = _env(tmp_path, CASSETTED_MQTT__BASE_TOPIC=probe.base,
               CASSETTED_MQTT__PORT=str(broker_port))
    result = subprocess.run([sys.executable, "-m", "cassetted", "request", "a cat song",
                             "--duration", "10", "--room", "living_room"],
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.is_file() and path.suffix == ".flac"
    bad = subprocess.run([sys.executable, "-m", "cassetted", "request", "x", "--room", "garage"],
                         env=env, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 1 and "unknown_room" in bad.stderr
