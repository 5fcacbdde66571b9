"""The RabbitMQ names operators see in the management UI: part of the public contract, like the event
type names. `workers/topology.py` declares them; everything else refers to them from here."""

import zlib

EVENTS = "orders.events"  # topic: every stored event, routing key = event type
COMMANDS = "orders.commands"  # direct: operator and schedule commands
DLX = "orders.dlx"  # direct: dead letters, routing key = the queue they died in

SCRAPER_QUEUE = "scraper.requests"
SCRAPE_REQUESTED = "scrape.requested"


def projection_queue(name: str) -> str:
    return f"projections.{name}"


def dlq(queue: str) -> str:
    return f"{queue}.dlq"


# Partitions (PROJECTION_PARTITIONS = P). With P = 1 every name above stands as it is. With P > 1 each
# event's routing key gains a last word naming its stream's partition (`order.placed.p1`), and each
# projection has a queue per partition, bound by its keys with that word (`order.#.p1`): a stream's
# events all go to one queue, in order, while P workers of one projection apply in parallel. A queue
# bound to `order.placed.#` receives that kind of event either way.

def partition_of(stream_id: str, partitions: int) -> int:
    """The stream's partition: a hash every process computes alike (not Python's salted hash())."""
    return zlib.crc32(stream_id.encode()) % partitions if partitions > 1 else 0


def routing_key(event_type: str, partition: int, partitions: int) -> str:
    return event_type if partitions <= 1 else f"{event_type}.p{partition}"


def partition_queues(projection: str, partitions: int) -> list[str]:
    queue = projection_queue(projection)
    return [queue] if partitions <= 1 else [f"{queue}.p{k}" for k in range(partitions)]


def partition_bindings(bindings: tuple[str, ...], partition: int, partitions: int) -> tuple[str, ...]:
    return bindings if partitions <= 1 else tuple(f"{b}.p{partition}" for b in bindings)


def retry_queue(queue: str) -> str:
    """Where a failed message waits out its backoff (a per-message TTL) before it goes back to `queue`."""
    return f"{queue}.retry"
