"""Fixtures: a tiny random-weight ACE-Step checkpoint, written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Official layout: acestep-v15-turbo/ and acestep-v15-base/, vae/,
    Qwen3-Embedding-0.6B/, acestep-5Hz-lm-1.7B/ (tiny, random, made here; no download)."""
    pytest.importorskip("torch")
    from tests.music.acestep.tiny import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("ace-step-1.5"), lm="1.7B",
                            variants=("turbo", "base"))
