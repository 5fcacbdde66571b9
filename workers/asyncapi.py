"""The AsyncAPI 3.0 document of the broker: every exchange, queue and message, generated from the code.

Built from `workers.topology`, the event registry and `ScrapeRequest`, so it cannot drift from what is
declared and published; tests/test_asyncapi.py keeps the committed tests/asyncapi.json equal to it.
Exchanges and queues are both channels (AMQP binding `is: routingKey` and `is: queue`). What that
binding has no field for (queue arguments, a queue's bindings, a message's routing key) goes in `x-`
extensions, which AsyncAPI allows there. FastStream's generator is not used: it cannot read msgspec.
"""

import json

import msgspec

import events  # noqa: F401  (registers every event type)
from events.base import REGISTRY, Recorded
from events.topics import matches_any
from workers import topology
from workers.scraper import ScrapeRequest

AMQP = "0.3.0"  # the AMQP binding version AsyncAPI 3.0 defines
SCHEMAS = "#/components/schemas/"
SCRAPE = topology.SCRAPE_REQUESTED
UUID = {"type": "string", "format": "uuid"}

# The headers the relay sets (workers/relay.py); the x- ones are added when a consumer retries or
# dead-letters a message (workers/consumer.py), so a queue or DLQ may hold messages carrying them.
HEADERS = {
    "type": "object",
    "properties": {
        "stream_id": {"type": "string"}, "version": {"type": "integer"},
        "position": {"type": "integer"}, "tx_id": {"type": "integer"},
        "correlation_id": UUID, "causation_id": UUID,
        "x-attempts": {"type": "integer", "description": "Failed attempts so far."},
        "x-error": {"type": "string", "description": "The last failure."},
        "x-original-routing-key": {"type": "string", "description": "The event type, once retried via the queue."},
        "x-events": {"type": "integer", "minimum": 2,
                     "description": "A packed message: how many events its array holds (absent: one event)."},
        "x-event-type": {"type": "string", "description": "A packed message: the type of all its events."},
        "x-streams": {"type": "integer", "description": "A packed message: how many streams its events are of."},
        "x-last-position": {"type": "integer", "description": "A packed message: its last event's position."},
        "x-last-tx-id": {"type": "integer", "description": "A packed message: its last event's transaction id."},
    },
    "required": ["correlation_id", "position", "stream_id", "tx_id", "version"],
}


def event_types() -> dict[str, type]:
    """The registered types of the `events` package; test modules register their own, left out here."""
    return {name: cls for name, cls in sorted(REGISTRY.items()) if cls.__module__.startswith("events.")}


def _schemas() -> tuple[dict, dict]:
    """(the envelope's schema without `data`, the component schemas), refs pointing into components.

    msgspec cannot describe Recorded (`data` is msgspec.Raw), so a copy without `data` stands in.
    """
    envelope = msgspec.defstruct("Recorded", [
        (f.name, f.type) if f.required else (f.name, f.type, f.default)
        for f in msgspec.structs.fields(Recorded) if f.name != "data"
    ], kw_only=True)
    _, components = msgspec.json.schema_components(
        [envelope, ScrapeRequest, *event_types().values()], ref_template=SCHEMAS + "{name}")
    return components.pop("Recorded"), components


def _message(name: str, payload: dict, amqp: dict, **extra) -> dict:
    return {"name": name, "contentType": "application/json", "payload": payload, "x-routing-key": name,
            "bindings": {"amqp": {**amqp, "bindingVersion": AMQP}}, **extra}


def _event_message(name: str, envelope: dict) -> dict:
    cls = REGISTRY[name].__name__
    one = {  # the envelope as the relay encodes it (every field present), `data` typed per event
        "type": "object", "title": f"Recorded[{cls}]", "description": Recorded.__doc__,
        "properties": {**envelope["properties"], "type": {"type": "string", "const": name},
                       "data": {"$ref": SCHEMAS + cls}},
        "required": sorted([*envelope["properties"], "data"]),
    }
    packed = {"type": "array", "items": one, "minItems": 2, "title": f"list[Recorded[{cls}]]",
              "description": "Events the relay read together, of this one type (and partition), in commit order; "
                             "the headers describe the first and say how many (workers/relay.py pack)."}
    return _message(name, {"oneOf": [one, packed]}, {"messageType": name}, title=cls,  # AMQP `type` = name
                    headers=HEADERS, correlationId={"location": "$message.header#/correlation_id"},
                    description="One event, as a JSON object; or, when the relay packs the events it read "
                                "together (RELAY_MAX_EVENTS_PER_MESSAGE > 1), several of this type as a JSON array.")


def _channel(name: str, messages: list[str], description: str, amqp: dict) -> dict:
    return {"address": name, "description": description,
            "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in messages},
            "bindings": {"amqp": {**amqp, "bindingVersion": AMQP}}}


def _exchange(name: str, kind: str, messages: list[str], description: str) -> dict:
    return _channel(name, messages, description, {"is": "routingKey", "exchange": {
        "name": name, "type": kind, "durable": True, "autoDelete": False, "vhost": "/"}})


def _queue(name: str, messages: list[str], bindings: list[tuple[str, str]], arguments: dict,
           description: str) -> dict:
    return _channel(name, messages, description, {
        "is": "queue",
        "queue": {"name": name, "durable": True, "exclusive": False, "autoDelete": False, "vhost": "/"},
        "x-arguments": arguments,
        "x-bindings": [{"exchange": e, "routingKey": k} for e, k in bindings],
    })


def _operation(action: str, channel: str, messages: list[str], amqp: dict, description: str) -> dict:
    return {"action": action, "description": description, "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
            "bindings": {"amqp": {**amqp, "bindingVersion": AMQP}}}


def _queues(types: list[str]) -> list[tuple[str, list[str], list[tuple[str, str]], str]]:
    """(queue, the messages routed to it, its bindings, what consumes it) for every consumed queue."""
    queues = [(topology.projection_queue(p), [t for t in types if matches_any(keys, t)],
               [(topology.EVENTS, k) for k in keys], f"The {p} projection applies events to its read tables.")
              for p, keys in sorted(topology.subscriptions().items())]
    return [*queues, (topology.SCRAPER_QUEUE, [SCRAPE], [(topology.COMMANDS, SCRAPE)], "The scraper runs scrapes.")]


def document() -> dict:
    envelope, schemas = _schemas()
    types = list(event_types())
    messages = {t: _event_message(t, envelope) for t in types}
    messages[SCRAPE] = _message(SCRAPE, {"$ref": SCHEMAS + "ScrapeRequest"}, {}, title="ScrapeRequest")
    channels = {
        topology.EVENTS: _exchange(topology.EVENTS, "topic", types, "Every stored event; routing key = its type."),
        topology.COMMANDS: _exchange(topology.COMMANDS, "direct", [SCRAPE], "Operator and schedule commands."),
    }
    operations = {
        "relay.publish": _operation("send", topology.EVENTS, types, {"deliveryMode": 2, "timestamp": True},
                                    "The outbox relay publishes every event in commit order, with confirms."),
        "scrape.request": _operation("send", topology.COMMANDS, [SCRAPE], {"deliveryMode": 2, "mandatory": True},
                                     "`orders scrape` and the scraper's schedules request a scrape."),
    }
    queues = _queues(types)
    for queue, routed, bindings, description in queues:
        # Each queue is quorum, single-active-consumer, dead-lettered through the DLX to <queue>.dlq.
        channels[queue] = _queue(queue, routed, bindings, topology.queue_arguments(queue), description)
        if queue != topology.SCRAPER_QUEUE:
            retry = topology.retry_queue(queue)
            channels[retry] = _queue(retry, routed, [], {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue},
                                     f"Failed messages of {queue} waiting out their backoff (a per-message TTL),"
                                     f" then back to {queue}.")
        channels[topology.dlq(queue)] = _queue(topology.dlq(queue), routed, [(topology.DLX, queue)], {},
                                               f"Messages {queue} gave up on, kept for inspection and redrive.")
        operations[f"{queue}.consume"] = _operation("receive", queue, routed, {"ack": True}, description)
    dead = sorted({m for _, routed, _, _ in queues for m in routed})
    channels[topology.DLX] = _exchange(topology.DLX, "direct", dead,
                                       "Dead letters; routing key = the queue they died in.")
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "orders broker", "version": "1.0.0",
                 "description": "RabbitMQ exchanges, queues and messages of the orders backend."},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render() -> str:
    """The document as JSON, keys sorted: stable, diffable, no new dependency."""
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"
