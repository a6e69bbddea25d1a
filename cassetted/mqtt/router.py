"""One topic router: match, size-check, decode, validate, dispatch, answer.

Every command topic is a Route with the pydantic model that validates it; the handler
receives a validated model and the values of the `+` wildcards, and returns a Reply. The
router owns the whole error path, so every command is answered the same way:
`{"ok": false, "error": {"code", "message", "field"}}` on the MQTT v5 response topic, or on
the `reply_to` topic of the payload, or else on `<base>/reply`; an `error` event follows.

With a `user_prefix` ("as"), every command is also accepted on `<base>/as/<mqtt user>/...`.
Subscribers cannot see who published a message, but the broker can make a client prove it:
a Mosquitto ACL `pattern write <base>/as/%u/#` lets each login publish only under its own
name. The handler runs with that name in `MQTT_USER` (a context variable).
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import aiomqtt
from pydantic import BaseModel, ValidationError

from cassetted.contract import errors
from cassetted.contract.schemas import Event, Reply, topic_problem
from cassetted.mqtt import wire
from cassetted.mqtt.client import response_target

log = logging.getLogger(__name__)

# The broker-enforced MQTT login a command arrived under (`<base>/as/<login>/...`), or None.
MQTT_USER: contextvars.ContextVar[str | None] = contextvars.ContextVar("mqtt_user", default=None)
# Where the reply to the command being handled goes when it is the sender's own address
# (its MQTT v5 response topic, else its `reply_to`), or None when it goes to the shared
# `<base>/reply`: a handler that answers with a secret must know it goes somewhere private.
REPLY_ADDRESS: contextvars.ContextVar[str | None] = contextvars.ContextVar("reply_address",
                                                                           default=None)

Publish = Callable[..., None]
CommandHandler = Callable[[list[str], Any], Awaitable[Reply]]
RawHandler = Callable[[str, bytes], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    filter: str
    model: type[BaseModel] | None
    handler: CommandHandler | RawHandler
    as_user: bool = False  # the first `+` is the MQTT login, not a handler parameter


def match(filter_: str, topic: str) -> list[str] | None:
    """The values of the `+` (and `#`) wildcards if `topic` matches `filter_`, else None."""
    f_levels, t_levels = filter_.split("/"), topic.split("/")
    params: list[str] = []
    for i, level in enumerate(f_levels):
        if level == "#":
            params.append("/".join(t_levels[i:]))
            return params
        if i >= len(t_levels):
            return None
        if level == "+":
            params.append(t_levels[i])
        elif level != t_levels[i]:
            return None
    return params if len(f_levels) == len(t_levels) else None


def _field_path(loc: tuple[int | str, ...], data: Any) -> str | None:
    """The dotted path of a pydantic error location in the payload ("rooms.0"), without the
    union member tags pydantic adds ("rooms.list[constrained-str].0"); keys are the sender's
    own (an unknown field), so each is kept short and readable."""
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(node, dict) or (isinstance(node, list) and isinstance(part, int)):
            parts.append(wire.readable(str(part)))
            try:
                node = node[part]  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                node = None
        # else: a union tag on the way to the value, not a place in the payload
    return ".".join(parts) or None


def _field_of(error: ValidationError, data: Any) -> tuple[str | None, str]:
    first = error.errors()[0]
    field = _field_path(first["loc"], data)
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    return field, f"{field}: {message}" if field else message


def _loggable(text: str) -> str:
    """One log line, whatever the sender put in it (no forged lines, no surrogates)."""
    text = text if len(text) <= 300 else text[:300] + "…"
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text


class Router:
    """Dispatch table of command routes (answered) and raw routes (external protocols)."""

    def __init__(self, base_topic: str, publish: Publish, user_prefix: str | None = None) -> None:
        self.base = base_topic
        self._publish = publish
        self._user_prefix = user_prefix
        self._routes: list[Route] = []

    def command(self, relative: str, model: type[BaseModel], handler: CommandHandler) -> None:
        """A command under the base topic, validated by `model` and always answered."""
        self._routes.append(Route(f"{self.base}/{relative}", model, handler))
        if self._user_prefix:
            self._routes.append(Route(f"{self.base}/{self._user_prefix}/+/{relative}", model,
                                      handler, as_user=True))

    def raw(self, filter_: str, handler: RawHandler) -> None:
        """A foreign topic (Hermes, Home Assistant status): topic and bytes in; the handler
        speaks that protocol's own replies."""
        self._routes.append(Route(filter_, None, handler))

    def subscriptions(self) -> list[str]:
        return [route.filter for route in self._routes]

    async def dispatch(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        for route in self._routes:
            params = match(route.filter, topic)
            if params is not None:
                break
        else:
            log.debug("no route for %s", topic)
            return
        payload = message.payload if isinstance(message.payload, bytes) else str(
            message.payload or "").encode()
        if route.model is None:
            try:
                await route.handler(topic, payload)  # type: ignore[arg-type]
            except Exception:
                log.exception("handler for %s failed", topic)
            return
        response_topic, correlation = response_target(message)
        if response_topic is not None and topic_problem(response_topic) is not None:
            # The broker forwards a response topic with wildcards; publishing to it would
            # fail. Answer on the shared reply topic, so the sender still hears why.
            bad_topic = response_topic
            response_topic = None
        else:
            bad_topic = None
        token = MQTT_USER.set(params.pop(0) if route.as_user else None)
        try:
            await self._command(route, params, payload, topic, response_topic, correlation,
                                bad_topic)
        finally:
            MQTT_USER.reset(token)

    async def _command(self, route: Route, params: list[str], payload: bytes, topic: str,
                       response_topic: str | None, correlation: bytes | None,
                       bad_topic: str | None = None) -> None:
        data: Any = None
        try:
            data = wire.parse(payload)
            wire.check_object(data)
            if bad_topic is not None:
                raise errors.InvalidPayload(
                    f"response_topic: not a topic the broker accepts: it "
                    f"{topic_problem(bad_topic)}", "response_topic")
            try:
                model = route.model.model_validate(data)  # type: ignore[union-attr]
            except ValidationError as error:
                field, message = _field_of(error, data)
                raise errors.InvalidPayload(message, field) from None
            address = REPLY_ADDRESS.set(_own_address(response_topic, data))
            try:
                handler = cast(CommandHandler, route.handler)  # a route with a model is a command's
                reply = await handler(params, model)
            finally:
                REPLY_ADDRESS.reset(address)
        except errors.CassettedError as error:
            reply = Reply(ok=False, error=error.info(), **error.details)
        except Exception:
            log.exception("command on %s failed", topic)
            reply = Reply(ok=False, error=errors.CassettedError("internal error").info())
        self._answer(reply, data, topic, response_topic, correlation)

    def _answer(self, reply: Reply, data: Any, topic: str, response_topic: str | None,
                correlation: bytes | None) -> None:
        given = data if isinstance(data, dict) else {}
        if reply.request_id is None:
            reply.request_id = _echoed_request_id(given)
        target = _own_address(response_topic, given) or f"{self.base}/reply"
        body = reply.model_dump_json(exclude_none=True)
        self._publish(target, body, correlation_data=correlation)
        if not reply.ok and reply.error is not None:
            log.info("rejected %s: %s %s", _loggable(topic), reply.error.code,
                     _loggable(reply.error.message))
            event = Event(  # Event allows extra fields (extra="allow")
                type="error", ts=time.time(), error=reply.error, topic=topic,
                request_id=reply.request_id)
            self._publish(f"{self.base}/event", event.model_dump_json(exclude_none=True))


def _own_address(response_topic: str | None, data: Any) -> str | None:
    """The sender's own reply address (v5 response topic, else a usable `reply_to`), or
    None: then the reply goes to the shared `<base>/reply`."""
    return response_topic or _reply_to(data if isinstance(data, dict) else {})


def _reply_to(data: dict[str, Any]) -> str | None:
    """The payload's reply address, if the broker would take it (also for a payload that
    failed validation: the sender still hears why)."""
    value = data.get("reply_to")
    if isinstance(value, str):
        value = value.strip()  # as the model strips it
        if 0 < len(value) <= 256 and topic_problem(value) is None:
            return value
    return None


def _echoed_request_id(data: dict[str, Any]) -> str | None:
    """The sender's request_id for a reply the handler did not make: cut to the schema's
    128 characters, and left out when no JSON encoder could write it (a lone surrogate)."""
    value = data.get("request_id")
    if isinstance(value, str) and value.strip() and wire.is_unicode(value):
        return value.strip()[:128]
    return None
