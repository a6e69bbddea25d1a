"""How the daemon and the CLI get a lyrics writer for one request.

The chain is built per request because it depends on who asked (their keys, never another
user's, and their preferred provider) and on the provider the request prefers; providers
themselves are cheap to build.
"""

from __future__ import annotations

from cassetted.config import Settings
from cassetted.contract.schemas import SongRequest
from cassetted.lyrics.base import LyricsWriter
from cassetted.lyrics.chain import build_chain
from cassetted.store.credentials import CredentialStore


class LyricsService:
    def __init__(self, settings: Settings, credentials: CredentialStore | None) -> None:
        self._settings = settings.lyrics
        self._credentials = credentials

    def writer_for(self, request: SongRequest) -> LyricsWriter:
        """The request's provider first, then the user's preferred one, then the chain."""
        preferred = [request.lyrics_provider, self._settings.user_providers.get(request.user)
                     if request.user is not None else None]
        chain = build_chain(self._settings, self._credentials, request.user, preferred)
        return chain.write
