"""The vocabulary: one module per stream kind; importing the package registers every event type."""

from events import users  # noqa: F401  (registers user.* event types)
