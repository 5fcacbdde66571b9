"""The AsyncAPI document: committed copy current, complete against the code, structurally sound. No services."""

from pathlib import Path

import pytest

import events  # noqa: F401  (registers every event type)
from events.base import REGISTRY
from workers import asyncapi, topology

# The events package's vocabulary; tests/support.py registers test-only types in the same registry.
EVENT_TYPES = {name: cls for name, cls in REGISTRY.items() if cls.__module__.split(".")[0] == "events"}
COMMITTED = Path(__file__).with_name("asyncapi.json")
REGENERATE = """python -c "from workers.asyncapi import render; open('tests/asyncapi.json','w').write(render())\""""


@pytest.fixture(scope="module")
def doc() -> dict:
    return asyncapi.document()


def resolve(doc: dict, ref: str):
    """Follow a local JSON pointer (`#/a/b`); KeyError if it points nowhere."""
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_committed_document_is_current():
    assert COMMITTED.exists(), f"tests/asyncapi.json is missing; generate it with:\n  {REGENERATE}"
    assert COMMITTED.read_text() == asyncapi.render(), (
        f"tests/asyncapi.json is out of date with the code; regenerate it with:\n  {REGENERATE}")


def test_document_is_deterministic():
    assert asyncapi.render() == asyncapi.render()
    assert asyncapi.document() == asyncapi.document()


def test_every_event_type_is_a_message_on_orders_events(doc):
    assert len(EVENT_TYPES) >= 17  # importing events registered them
    on_events = doc["channels"][topology.EVENTS]["messages"]
    published = {m["$ref"].rsplit("/", 1)[1] for m in doc["operations"]["relay.publish"]["messages"]}
    for name, cls in EVENT_TYPES.items():
        message = doc["components"]["messages"][name]
        assert resolve(doc, on_events[name]["$ref"]) is message
        assert name in published
        assert message["x-routing-key"] == name and message["bindings"]["amqp"]["messageType"] == name
        payload, packed = message["payload"]["oneOf"]  # one event, or several of this type packed
        assert packed["type"] == "array" and packed["items"] == payload and packed["minItems"] == 2
        assert payload["properties"]["type"]["const"] == name
        assert payload["properties"]["data"] == {"$ref": f"#/components/schemas/{cls.__name__}"}
        assert {"id", "stream_id", "version", "type", "position", "tx_id", "recorded_at", "correlation_id",
                "causation_id", "actor", "schema_version", "data"} == set(payload["properties"])
        assert set(message["headers"]["properties"]) >= {"stream_id", "version", "position", "tx_id",
                                                        "correlation_id", "causation_id", "x-events", "x-event-type"}
        assert cls.__name__ in doc["components"]["schemas"]


def test_test_only_event_types_are_left_out(doc):
    import tests.support  # noqa: F401  (registers test.happened and test.poisoned)

    assert {"test.happened", "test.poisoned"} <= set(REGISTRY)
    assert set(doc["components"]["messages"]) == {*EVENT_TYPES, topology.SCRAPE_REQUESTED}


def test_scrape_request_is_a_command_message(doc):
    message = doc["components"]["messages"][topology.SCRAPE_REQUESTED]
    assert message["payload"] == {"$ref": "#/components/schemas/ScrapeRequest"}
    assert set(doc["components"]["schemas"]["ScrapeRequest"]["properties"]) == {
        "source", "url", "max_pages", "max_products", "follow", "request_id"}
    assert list(doc["channels"][topology.COMMANDS]["messages"]) == [topology.SCRAPE_REQUESTED]


def test_every_exchange_is_a_channel(doc):
    for name, kind in ((topology.EVENTS, "topic"), (topology.COMMANDS, "direct"), (topology.DLX, "direct")):
        amqp = doc["channels"][name]["bindings"]["amqp"]
        assert amqp["is"] == "routingKey"
        assert amqp["exchange"] == {"name": name, "type": kind, "durable": True, "autoDelete": False, "vhost": "/"}


def test_every_queue_is_a_channel_with_its_bindings_and_dead_letter_queue(doc):
    queues = {topology.projection_queue(p): [(topology.EVENTS, k) for k in keys]
              for p, keys in topology.subscriptions().items()}
    queues[topology.SCRAPER_QUEUE] = [(topology.COMMANDS, topology.SCRAPE_REQUESTED)]
    for queue, bindings in queues.items():
        amqp = doc["channels"][queue]["bindings"]["amqp"]
        assert amqp["is"] == "queue" and amqp["queue"]["name"] == queue and amqp["queue"]["durable"]
        assert amqp["x-arguments"] == topology.queue_arguments(queue)
        assert amqp["x-arguments"]["x-queue-type"] == "quorum" and amqp["x-arguments"]["x-single-active-consumer"]
        assert [(b["exchange"], b["routingKey"]) for b in amqp["x-bindings"]] == bindings
        dead = doc["channels"][topology.dlq(queue)]["bindings"]["amqp"]
        assert [(b["exchange"], b["routingKey"]) for b in dead["x-bindings"]] == [(topology.DLX, queue)]
        assert doc["operations"][f"{queue}.consume"]["action"] == "receive"
    retries = [topology.retry_queue(q) for q in queues if q != topology.SCRAPER_QUEUE]
    for retry in retries:  # where a failed projection message waits out its backoff, then goes back
        amqp = doc["channels"][retry]["bindings"]["amqp"]
        assert amqp["x-arguments"]["x-dead-letter-routing-key"] == retry.removesuffix(".retry")
    expected = {topology.EVENTS, topology.COMMANDS, topology.DLX, *queues, *map(topology.dlq, queues), *retries}
    assert set(doc["channels"]) == expected


def test_projection_queues_carry_exactly_the_events_their_keys_route(doc):
    users = doc["channels"][topology.projection_queue("users")]["messages"]
    assert set(users) == {t for t in EVENT_TYPES if t.startswith("user.")}
    catalog = doc["channels"][topology.projection_queue("catalog")]["messages"]
    assert set(catalog) == {t for t in EVENT_TYPES if t.startswith("product.")}


def test_basic_structure(doc):
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["channels"] and doc["operations"]
    assert set(doc["components"]) == {"messages", "schemas"}
    for channel_id, channel in doc["channels"].items():
        assert channel["address"] == channel_id and channel["messages"]
        assert channel["bindings"]["amqp"]["bindingVersion"] == "0.3.0"
    for op in doc["operations"].values():
        assert op["action"] in ("send", "receive")
        channel = resolve(doc, op["channel"]["$ref"])
        for message in op["messages"]:  # AsyncAPI 3: an operation's messages are its channel's
            assert message["$ref"].startswith(op["channel"]["$ref"] + "/messages/")
            assert resolve(doc, message["$ref"]) in channel["messages"].values()
    for message in doc["components"]["messages"].values():
        assert message["contentType"] == "application/json" and message["payload"]
    for ref in refs(doc):  # every reference, schemas included, points into this document
        resolve(doc, ref)
    for schema in doc["components"]["schemas"].values():
        assert "$defs" not in schema and "definitions" not in schema
