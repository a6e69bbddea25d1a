"""A minimal client of Home Assistant's REST API: call a service, read an entity's state.

urllib in a worker thread (standard library, TLS, chunked responses) keeps the event loop
free without a dependency. The long-lived token comes from an injected async provider
(the CredentialStore in the daemon) on every request, so `cassetted keys set homeassistant`
takes effect without a restart. The token is only ever placed in the Authorization header:
it is never logged, and error messages name the path and status, never the headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

from cassetted.store.credentials import Secret

log = logging.getLogger(__name__)

TokenProvider = Callable[[], Awaitable[Secret | None]]
MAX_RESPONSE_BYTES = 1024 * 1024


class HomeAssistantError(Exception):
    """Home Assistant refused or cannot be reached; the message is safe to show."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HomeAssistantClient:
    """`POST /api/services/<domain>/<service>` and `GET /api/states/<entity_id>`."""

    def __init__(self, base_url: str, token: TokenProvider, *, verify_tls: bool = True,
                 timeout_s: float = 10.0) -> None:
        self._base = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout_s
        self._context = ssl.create_default_context() if verify_tls else \
            ssl._create_unverified_context()

    def __repr__(self) -> str:
        return f"HomeAssistantClient({self._base!r}, token=<hidden>)"

    async def follow(self, entity_id: str, on_state: Callable[[dict[str, Any]], Any],
                     on_subscribed: Callable[[], Awaitable[None]] | None = None) -> None:
        """Push updates of one entity over HA's websocket API (see websocket.py)."""
        from cassetted.homeassistant.websocket import follow_entity

        await follow_entity(self._base, self._token, entity_id, on_state,
                            context=self._context if self._base.startswith("https") else None,
                            timeout_s=self._timeout, on_subscribed=on_subscribed)

    async def call_service(self, domain: str, service: str, data: dict[str, Any]) -> Any:
        return await self._request("POST", f"/api/services/{_seg(domain)}/{_seg(service)}", data)

    async def get_state(self, entity_id: str) -> dict[str, Any]:
        state = await self._request("GET", f"/api/states/{_seg(entity_id)}")
        if not isinstance(state, dict):
            raise HomeAssistantError(f"unexpected answer for {entity_id}")
        return state

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        secret = await self._token()
        if secret is None:
            raise HomeAssistantError("no Home Assistant token stored; run "
                                     "`cassetted keys set homeassistant`")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self._base}{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {secret.reveal()}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        return await asyncio.to_thread(self._send, request, method, path)

    def _send(self, request: urllib.request.Request, method: str, path: str) -> Any:
        try:
            with urllib.request.urlopen(request, timeout=self._timeout,
                                        context=self._context) as response:
                raw = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as error:
            error.close()
            if error.code == 401:
                raise HomeAssistantError(
                    "Home Assistant refused the token (401); store a valid long-lived token "
                    "with `cassetted keys set homeassistant`", 401) from None
            raise HomeAssistantError(f"Home Assistant answered {error.code} to {method} {path}",
                                     error.code) from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise HomeAssistantError(f"cannot reach Home Assistant at {self._base}: "
                                     f"{str(reason)[:200]}") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise HomeAssistantError(f"answer to {method} {path} is too large")
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise HomeAssistantError(f"answer to {method} {path} is not JSON") from None


def _seg(value: str) -> str:
    """One URL path segment (entity ids and service names never need more)."""
    return urllib.parse.quote(value, safe="._")
