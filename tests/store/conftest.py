"""Store tests share the lyrics tests' temporary database fixture."""

from tests.lyrics.conftest import db  # noqa: F401
