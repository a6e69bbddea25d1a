"""The broker connection: aiomqtt inside a reconnect loop the daemon owns.

aiomqtt 2.x does not reconnect by itself, so `MqttLink.run` is an outer loop around a fresh
`async with aiomqtt.Client(...)` with capped, jittered backoff. Outgoing messages go through
an outbox that survives reconnects: a publish made while the broker is away is sent when it
comes back, and retained state is re-sent on every connection.

Inbound QoS 1 messages are acknowledged by hand (paho's `manual_ack`, which aiomqtt 2.x does
not expose: we set it on its paho client), and only once the handler returned, that is after
a song request's job row is committed. A daemon killed in between never acked the message,
so the broker redelivers it on the next connection of our persistent session.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cassetted.config import MqttSettings
from cassetted.contract.schemas import topic_problem
from cassetted.tasks import BackgroundTasks

log = logging.getLogger(__name__)

OUTBOX_LIMIT = 10_000
MAX_IN_FLIGHT = 100         # QoS 1 messages awaiting their PUBACK at once
MAX_HANDLING = 500          # inbound messages being handled at once
SESSION_EXPIRY_S = 3600  # the broker keeps our QoS 1 commands this long while we are away

class Inbound(Protocol):
    """Who the link carries inbound messages to (the router)."""

    def subscriptions(self) -> list[str]: ...
    async def dispatch(self, message: aiomqtt.Message) -> None: ...


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    correlation_data: bytes | None = None


def status_topic(settings: MqttSettings) -> str:
    return f"{settings.base_topic}/status"


def client_id(settings: MqttSettings) -> str:
    """Stable per host and base topic, so a persistent session finds us again."""
    if settings.client_id:
        return settings.client_id
    name = f"cassetted-{socket.gethostname()}-{settings.base_topic}"
    return name.replace("/", "_")[:128]


def make_client(settings: MqttSettings, *, identifier: str | None = None,
                will: aiomqtt.Will | None = None, persistent: bool = False) -> aiomqtt.Client:
    """An aiomqtt client from the settings (also used by `cassetted request`)."""
    v5 = settings.protocol == "5"
    tls_params = None
    if settings.tls:
        tls_params = aiomqtt.TLSParameters(
            ca_certs=str(settings.ca_certs) if settings.ca_certs else None,
            certfile=str(settings.certfile) if settings.certfile else None,
            keyfile=str(settings.keyfile) if settings.keyfile else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    kwargs: dict[str, Any] = {}  # the session options differ between MQTT 3.1.1 and 5
    if v5:
        if persistent:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            kwargs["properties"] = props
            kwargs["clean_start"] = False
    else:
        kwargs["clean_session"] = not persistent
    client = aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        will=will,
        keepalive=settings.keepalive_s,
        tls_params=tls_params,
        tls_insecure=settings.tls_insecure if settings.tls else None,
        timeout=10,
        max_inflight_messages=MAX_IN_FLIGHT,
        # Nagle's algorithm held each small reply back until the broker's delayed ACK of the
        # packet before it (~40 ms a hop); a command daemon sends small packets only.
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        **kwargs,
    )
    # We keep up to MAX_IN_FLIGHT publishes pending on purpose; aiomqtt would warn past 10.
    client.pending_calls_threshold = MAX_IN_FLIGHT
    return client


def paho_of(client: aiomqtt.Client) -> Any:
    """The paho client inside aiomqtt's (aiomqtt 2.x keeps it as `_client`, see its
    client.py); the features aiomqtt does not wrap (manual ack, CONNACK flags) live there."""
    return client._client


def watch_session(client: aiomqtt.Client) -> Callable[[], bool | None]:
    """Record CONNACK's session-present flag (aiomqtt drops it); returns a reader."""
    paho = paho_of(client)
    inner = paho.on_connect
    seen: list[bool] = []

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        seen.append(bool(getattr(flags, "session_present", False)))
        inner(c, userdata, flags, reason, properties)

    paho.on_connect = on_connect
    return lambda: seen[-1] if seen else None


class SessionMarker:
    """Remembers, in the state directory, which client id already had a broker session.

    A CONNACK without session-present is normal the very first time; after that it means
    the broker forgot our subscriptions and the QoS 1 commands queued for us (a broker
    restart without `persistence true`, or an absence longer than the session expiry)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._known_here = False  # this process already connected once

    def had_session(self, identifier: str) -> bool:
        if self._known_here:
            return True
        if self._path is None:
            return False
        try:
            return self._path.read_text(encoding="utf-8").strip() == identifier
        except OSError:
            return False

    def remember(self, identifier: str) -> None:
        written = self.had_session(identifier) and self._known_here
        self._known_here = True
        if self._path is None or written:
            return
        try:
            self._path.write_text(identifier + "\n", encoding="utf-8")
        except OSError as error:
            log.debug("could not write %s: %s", self._path, error)


class MqttLink:
    """Keeps one connection alive forever and moves messages both ways.

    Outgoing messages may be queued from construction on (`publish`); `run(inbound)`
    connects and hands every inbound message to `inbound`.
    """

    def __init__(self, settings: MqttSettings, *, session_marker: Path | None = None) -> None:
        self._settings = settings
        self._tasks = BackgroundTasks("mqtt")
        self._outbox: collections.deque[Outgoing] = collections.deque(maxlen=OUTBOX_LIMIT)
        self._outbox_ready = asyncio.Event()
        self._handling = asyncio.Semaphore(MAX_HANDLING)
        self.connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self.v5 = settings.protocol == "5"
        self._marker = SessionMarker(session_marker)
        self.session_resumed: bool | None = None  # CONNACK session-present of the last connect

    # ------------------------------------------------------------------ outgoing

    @property
    def backlog(self) -> int:
        """Messages queued and not yet handed to the broker (the reply-first gate reads it)."""
        return len(self._outbox)

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 1,
                correlation_data: bytes | None = None) -> None:
        """Queue a message; never blocks and never fails (the outbox drops the oldest)."""
        problem = topic_problem(topic)
        if problem is not None:  # Mosquitto would drop the connection, at every retry
            log.warning("not publishing to %a: the topic %s", topic[:100], problem)
            return
        data = payload.encode() if isinstance(payload, str) else payload
        if len(self._outbox) == self._outbox.maxlen:
            log.warning("MQTT outbox full; dropping the oldest message")
        self._outbox.append(Outgoing(topic, data, qos, retain, correlation_data))
        self._outbox_ready.set()

    async def _send(self, client: aiomqtt.Client, item: Outgoing) -> None:
        properties = None
        if item.correlation_data is not None and self.v5:
            properties = Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = item.correlation_data
        await client.publish(item.topic, item.payload, qos=item.qos, retain=item.retain,
                             properties=properties)

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Hand queued messages to the client in order, many awaiting their PUBACK at once.

        Awaiting each QoS 1 acknowledgement before sending the next would cap the daemon at
        one broker round trip per message; paho keeps the order on the wire.
        """
        in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        pending: set[asyncio.Task[None]] = set()

        async def send(item: Outgoing) -> None:
            try:
                await self._send(client, item)
            except (aiomqtt.MqttError, asyncio.CancelledError):
                self._outbox.appendleft(item)  # the connection dropped: send it next time
            except Exception:
                log.exception("MQTT message to %s dropped", item.topic[:200])
            finally:
                in_flight.release()

        try:
            while True:
                await self._outbox_ready.wait()
                while self._outbox:
                    await in_flight.acquire()
                    if not self._outbox:
                        in_flight.release()
                        break
                    task = self._tasks.spawn(send(self._outbox.popleft()), self._tasks.unique("send"))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                self._outbox_ready.clear()
        finally:
            for task in pending:
                task.cancel()

    async def flush(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - shutdown must stay bounded whoever calls it
        """Wait (bounded) until the outbox is empty: used before a clean shutdown.

        Polls: the outbox empties from many send tasks and a lost connection also ends the
        wait, and this runs once per shutdown; an event per cause would buy nothing.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._outbox and self.connected.is_set() and loop.time() < deadline:  # noqa: ASYNC110 - see above
            await asyncio.sleep(0.02)

    # ------------------------------------------------------------------ the loop

    async def run(self, inbound: Inbound, on_connect: Callable[[], None] = lambda: None) -> None:
        """Connect, serve `inbound`, and reconnect forever with capped exponential backoff;
        `on_connect` after each (re)connection (retained state goes out again)."""
        delay = self._settings.reconnect_min_s
        status = status_topic(self._settings)
        will = aiomqtt.Will(status, b"offline", qos=1, retain=True)
        while True:
            try:
                identifier = client_id(self._settings)
                client = make_client(self._settings, identifier=identifier, will=will,
                                     persistent=True)
                paho_of(client).manual_ack_set(True)  # acked in _handle, after the handler
                session_present = watch_session(client)
                async with client:
                    self._client = client
                    self._check_session(identifier, session_present())
                    for topic in inbound.subscriptions():
                        await client.subscribe(topic, qos=1)
                    await client.publish(status, b"online", qos=1, retain=True)
                    log.info("connected to MQTT broker %s:%d", self._settings.host,
                             self._settings.port)
                    delay = self._settings.reconnect_min_s
                    on_connect()
                    self.connected.set()
                    self._outbox_ready.set()
                    sender = self._tasks.spawn(self._drain(client), "sender", replace=True)
                    try:
                        async for message in client.messages:
                            # Concurrent handlers, started in arrival order, so a slow
                            # command never holds up the next; bounded for back-pressure.
                            await self._handling.acquire()
                            self._tasks.spawn(self._handle(client, message, inbound),
                                              self._tasks.unique("message"))
                        raise aiomqtt.MqttError("message stream ended")
                    finally:
                        sender.cancel()
                        await asyncio.gather(sender, return_exceptions=True)
            except aiomqtt.MqttError as error:
                self.connected.clear()
                self._client = None
                log.warning("MQTT broker %s:%d unavailable (%s); retrying in %.1f s",
                            self._settings.host, self._settings.port, error, delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self._settings.reconnect_max_s)

    def _check_session(self, identifier: str, present: bool | None) -> None:
        """Warn when the broker did not resume a session it should have kept."""
        self.session_resumed = present
        if not present and self._marker.had_session(identifier):
            log.warning(
                "the MQTT broker did not resume cassetted's session (client id %s): commands "
                "published while cassetted was away are lost. The broker must keep sessions "
                "across its restarts (Mosquitto: `persistence true`) and for at least %d s "
                "(`persistent_client_expiration`)", identifier, SESSION_EXPIRY_S)
        self._marker.remember(identifier)

    async def _handle(self, client: aiomqtt.Client, message: aiomqtt.Message,
                      inbound: Inbound) -> None:
        try:
            await inbound.dispatch(message)
        except asyncio.CancelledError:
            raise  # stopping: not handled, so not acked; the broker sends it again
        except Exception:
            log.exception("message on %s could not be handled", message.topic.value)
        else:
            self._ack(client, message)
        finally:
            self._handling.release()

    def _ack(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        """PUBACK a handled message, on the connection it came by (a later one gets it
        again from the broker anyway, and its packet id may mean another message there).

        Acks go out in the order handlers finish, not in arrival order: a slow command must
        not hold back the acks of quick ones (Mosquitto matches a PUBACK by packet id)."""
        if message.qos == 0 or client is not self._client:
            return
        try:
            paho_of(client).ack(message.mid, message.qos)
        except Exception as error:  # noqa: BLE001 - a closed socket: redelivered next time
            log.debug("could not ack message %d: %s", message.mid, error)

    async def close(self) -> None:
        """Cancel what the link still runs (handlers of commands not yet answered: unacked,
        so the broker sends them again on the next start)."""
        await self._tasks.cancel_all()

    async def goodbye(self) -> None:
        """Say `offline` ourselves on a clean stop (the will covers crashes)."""
        client = self._client
        if client is None or not self.connected.is_set():
            return
        try:
            await client.publish(status_topic(self._settings), b"offline", qos=1, retain=True,
                                 timeout=3)
        except aiomqtt.MqttError as error:
            log.warning("could not publish offline status: %s", error)


def response_target(message: aiomqtt.Message) -> tuple[str | None, bytes | None]:
    """The MQTT v5 response topic and correlation data of a request, if any."""
    props = message.properties
    if props is None:
        return None, None
    return getattr(props, "ResponseTopic", None), getattr(props, "CorrelationData", None)


__all__ = ["MqttLink", "Outgoing", "make_client", "response_target", "status_topic"]
