"""What every event is, and the one registry from stored type name to class."""

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import ClassVar, TypeVar

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """A fact, named in the past tense. Subclasses register with `@event("kind.happened")`."""

    type: ClassVar[str]


E = TypeVar("E", bound=type[Event])

REGISTRY: dict[str, type[Event]] = {}


class UnknownEventType(LookupError):
    """A stored type name no class is registered for; `where` names the stored event, when known."""

    def __init__(self, type_name: str, where: str = ""):
        super().__init__(type_name, where)  # both in args: the exception crosses a process pool (pickle)
        self.type_name, self.where = type_name, where

    def __str__(self) -> str:
        return f"{self.type_name} {self.where}".rstrip()


def event(name: str):
    """Register an Event class under its stored type name (dotted lower case: `order.placed`)."""
    if name != name.lower() or "." not in name:
        raise ValueError(f"event type names are dotted lower case, got {name!r}")

    def register(cls: E) -> E:
        if REGISTRY.get(name, cls) is not cls:
            raise ValueError(f"event type {name!r} registered twice")
        cls.type = name
        REGISTRY[name] = cls
        return cls

    return register


def decode(type_name: str, data: bytes) -> Event:
    try:
        cls = REGISTRY[type_name]
    except KeyError:
        raise UnknownEventType(type_name) from None
    return msgspec.json.decode(data, type=cls)


class Meta(msgspec.Struct, frozen=True, kw_only=True):
    """Who and what caused the events of one append."""

    correlation_id: uuid.UUID = msgspec.field(default_factory=uuid.uuid4)
    causation_id: uuid.UUID | None = None
    actor: str | None = None


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    """An event as stored: the envelope the relay publishes and the projectors consume."""

    id: uuid.UUID
    stream_id: str
    version: int
    type: str
    position: int
    tx_id: int
    recorded_at: datetime
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    actor: str | None = None
    schema_version: int = 1
    data: msgspec.Raw = msgspec.Raw(b"{}")

    def event(self) -> Event:
        return decode(self.type, self.data)

    @property
    def checkpoint(self) -> tuple[int, int]:
        return (self.tx_id, self.position)


_MESSAGE = msgspec.json.Decoder(Recorded | list[Recorded])


def unpack(body: bytes) -> list[Recorded]:
    """The events a message on orders.events carries: one event (an object) or several (an array).
    Raises msgspec.DecodeError (a ValueError) for anything else."""
    decoded = _MESSAGE.decode(body)
    return decoded if isinstance(decoded, list) else [decoded]


S = TypeVar("S")
# Every stream kind's state transition: (state before, the event, its stream version, when) -> state after.
Evolve = Callable[[S | None, Event, int, datetime], S | None]


def fold(evolve: Evolve[S], history: Iterable[tuple[Event, int, datetime]], state: S | None = None) -> S | None:
    """The state that `history` (event, version, when) leaves, starting from `state`."""
    for e, version, at in history:
        state = evolve(state, e, version, at)
    return state


def replay(evolve: Evolve[S], recorded: Iterable[Recorded]) -> S | None:
    """A stream's state from its stored events."""
    return fold(evolve, ((r.event(), r.version, r.recorded_at) for r in recorded))


def advance(evolve: Evolve[S], state: S | None, events: Iterable[Event], at: datetime) -> S | None:
    """The state after newly decided `events`, numbered on from the state's version."""
    start = state.version if state is not None else 0
    return fold(evolve, ((e, start + i, at) for i, e in enumerate(events, 1)), state)
