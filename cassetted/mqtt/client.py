"""The broker connection: aiomqtt inside a reconnect loop the daemon owns.

aiomqtt 2.x does not reconnect by itself, so `MqttLink.run` is an outer loop around a fresh
`async with aiomqtt.Client(...)` with capped, jittered backoff. Outgoing messages go through
an outbox that survives reconnects: a publish made while the broker is away is sent when it
comes back, and retained state is re-sent on every connection.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import socket
import ssl
from dataclasses import dataclass
from typing import Awaitable, Callable

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cassetted.config import MqttSettings
from cassetted.schemas import topic_problem

log = logging.getLogger(__name__)

OUTBOX_LIMIT = 10_000
MAX_IN_FLIGHT = 100         # QoS 1 messages awaiting their PUBACK at once
MAX_HANDLING = 500          # inbound messages being handled at once
SESSION_EXPIRY_S = 3600  # the broker keeps our QoS 1 commands this long while we are away

MessageHandler = Callable[[aiomqtt.Message], Awaitable[None]]


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
    kwargs: dict[str, object] = {}
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


class MqttLink:
    """Keeps one connection alive forever and moves messages both ways."""

    def __init__(self, settings: MqttSettings, on_message: MessageHandler,
                 subscriptions: Callable[[], list[str]],
                 on_connect: Callable[[], None] = lambda: None) -> None:
        self._settings = settings
        self._on_message = on_message
        self._subscriptions = subscriptions
        self._on_connect = on_connect
        self._outbox: collections.deque[Outgoing] = collections.deque(maxlen=OUTBOX_LIMIT)
        self._outbox_ready = asyncio.Event()
        self._handling = asyncio.Semaphore(MAX_HANDLING)
        self.connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self.v5 = settings.protocol == "5"

    # ------------------------------------------------------------------ outgoing

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
                    task = asyncio.create_task(send(self._outbox.popleft()))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                self._outbox_ready.clear()
        finally:
            for task in pending:
                task.cancel()

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until the outbox is empty: used before a clean shutdown."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._outbox and self.connected.is_set() and loop.time() < deadline:
            await asyncio.sleep(0.02)

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Connect, serve, and reconnect forever with capped exponential backoff."""
        delay = self._settings.reconnect_min_s
        status = status_topic(self._settings)
        will = aiomqtt.Will(status, b"offline", qos=1, retain=True)
        while True:
            try:
                client = make_client(self._settings, identifier=client_id(self._settings),
                                     will=will, persistent=True)
                async with client:
                    self._client = client
                    for topic in self._subscriptions():
                        await client.subscribe(topic, qos=1)
                    await client.publish(status, b"online", qos=1, retain=True)
                    log.info("connected to MQTT broker %s:%d", self._settings.host,
                             self._settings.port)
                    delay = self._settings.reconnect_min_s
                    self._on_connect()
                    self.connected.set()
                    self._outbox_ready.set()
                    sender = asyncio.create_task(self._drain(client), name="mqtt-sender")
                    handlers: set[asyncio.Task[None]] = set()
                    try:
                        async for message in client.messages:
                            # Concurrent handlers, started in arrival order, so a slow
                            # command never holds up the next; bounded for back-pressure.
                            await self._handling.acquire()
                            task = asyncio.create_task(self._handle(message))
                            handlers.add(task)
                            task.add_done_callback(handlers.discard)
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

    async def _handle(self, message: aiomqtt.Message) -> None:
        try:
            await self._on_message(message)
        finally:
            self._handling.release()

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
