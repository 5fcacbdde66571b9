"""The RabbitMQ names operators see in the management UI: part of the public contract, like the event
type names. `workers/topology.py` declares them; everything else refers to them from here."""

EVENTS = "orders.events"  # topic: every stored event, routing key = event type
COMMANDS = "orders.commands"  # direct: operator and schedule commands
DLX = "orders.dlx"  # direct: dead letters, routing key = the queue they died in

SCRAPER_QUEUE = "scraper.requests"
SCRAPE_REQUESTED = "scrape.requested"


def projection_queue(name: str) -> str:
    return f"projections.{name}"


def dlq(queue: str) -> str:
    return f"{queue}.dlq"
