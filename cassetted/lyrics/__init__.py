"""Lyrics providers (builtin, ollama, OpenAI-compatible) and the chain that tries them in order.

Entry point for the daemon: `cassetted.lyrics.chain.build_chain(settings, credentials, user,
preferred).write(spec)`.
"""

from cassetted.lyrics.base import LyricsError, LyricsProvider, LyricsResult

__all__ = ["LyricsError", "LyricsProvider", "LyricsResult"]
