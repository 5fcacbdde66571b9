"""The vocabulary: one module per stream kind; importing the package registers every event type."""

from events import orders, products, scrapes, users  # noqa: F401  (registers their event types)
