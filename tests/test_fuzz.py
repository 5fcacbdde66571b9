"""Schemathesis fuzzes the API through its own OpenAPI document, as each role: no answer may be a 5xx,
and every answer must be one the document declares for its operation (status, media type, headers,
body). The real app runs under uvicorn with the relay and the projection workers (the `system`
fixture), so what the fuzzer changes is really changed.

Bounded to fit the suite's time: a fixed seed, derandomized generation, no shrinking, no example
database, MAX_EXAMPLES per operation in each of schemathesis's phases (the document's examples,
coverage of its constraints, random fuzzing, stateful sequences along the links it infers)."""

import asyncio
import copy
from typing import NamedTuple

import pytest
import schemathesis
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.engine import Status, StopReason, events, from_schema

from tests.support import PASSWORD, account, admin_account, bearer

SEED = 15
MAX_EXAMPLES = 15
ROLES = ["anonymous", "buyer", "seller", "admin"]
# Every check schemathesis has (no 5xx; answers as documented: CONFORMANCE; OPTIONS's Allow; auth that is
# not ignored; a created resource readable, a deleted one gone) but two. positive_data_acceptance and
# negative_data_rejection hold the server to accepting every input the document allows and refusing every
# other, and no document can say that an id exists, that a cursor is signed or that a country code is a
# real one: tried, they fail on answers that are right.
CONFORMANCE = ["status_code_conformance", "content_type_conformance", "response_headers_conformance",
               "response_schema_conformance"]
CHECKS = {"enabled": True,
          "positive_data_acceptance": {"enabled": False}, "negative_data_rejection": {"enabled": False}}
# These can reach the caller's own account (GET /users lists it): an admin that demoted or deactivated
# itself would get nothing but 403 and 401 for the rest of its run. So they run last, on their own.
ON_USERS = ["changeRole", "deactivateUser", "reactivateUser"]
ADDRESS = {"name": "Ada", "line1": "1 Main St", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB"}


class World(NamedTuple):
    """The caller's headers, and ids the fuzzer could not guess, made through the API before it starts."""

    caller: dict
    logout: dict  # another login of the caller: POST /auth/logout revokes the login it is sent with
    products: list[str]
    orders: list[str]
    users: list[str]


@pytest.fixture(scope="module", autouse=True)
def _hypothesis_home(tmp_path_factory):
    """Hypothesis keeps its caches in ./.hypothesis: in a temporary directory instead, so that a run
    leaves nothing in the work tree."""
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    set_hypothesis_home_dir(None)


@pytest.fixture(scope="module")
async def document(system):
    return (await system.get("/schema/openapi.json")).json()


@pytest.fixture
async def world(system, pool, services, role) -> World:
    """Two sellers' products, a buyer's pending and paid orders holding both (so the seller sees only
    its own line), and the role's caller: the buyer, the first seller, a new admin, or nobody."""
    seller, other, buyer = [await account(system, kind) for kind in ("seller", "seller", "buyer")]
    products = [await _product(system, owner) for owner in (seller, other)]
    orders = [await _order(system, buyer, products, paid) for paid in (False, True)]
    users = [other["id"], buyer["id"]]
    me = {"buyer": buyer, "seller": seller}.get(role)
    if role == "admin":
        me = await admin_account(system, pool, services.settings())
    if me is None:
        return World({}, {}, products, orders, users)
    again = await system.post("/auth/login", json={"email": me["email"], "password": PASSWORD})
    return World(bearer(me), bearer(again.json()), products, orders, users)


async def _product(system, seller: dict) -> str:
    made = await system.post("/products", headers=bearer(seller), json={"name": "Mug", "price": "2.50", "stock": 1000})
    return made.json()["id"]


async def _order(system, buyer: dict, products: list[str], paid: bool) -> str:
    body = {"items": [{"product_id": p, "quantity": 1} for p in products], "shipping_address": ADDRESS}
    order = (await system.post("/orders", headers=bearer(buyer), json=body)).json()["id"]
    if paid:
        await system.post(f"/orders/{order}/pay", headers=bearer(buyer))
    return order


def config(base_url: str, headers: dict, world: World, *, stateful: bool = True) -> schemathesis.Config:
    # Half the time an id names something that exists; the rest stays random (a 404 to check too).
    known = {"products": world.products, "orders": world.orders, "users": world.users}
    where = {"path.product_id": "products", "body.items[*].product_id": "products", "path.order_id": "orders",
             "path.user_id": "users"}
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "base-url": base_url,
        "headers": headers,
        "workers": 1,
        "request-timeout": 10,
        "cache": {"enabled": False},  # nothing carried from one run to the next
        "auth": {"auto-signup": False},  # the caller is the role's account, not one schemathesis registers
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "no-shrink": True, "database": "none"},
        "checks": CHECKS,
        "phases": {"stateful": {"enabled": stateful}},
        "dictionaries": {name: {"values": ids} for name, ids in known.items() if ids},
        "parameters": {key: {"dictionary": name, "probability": 0.5} for key, name in where.items() if known[name]},
    })


def fuzz(document: dict, base_url: str, world: World) -> list[str]:
    """What schemathesis found wrong. What could take the caller's role or account away runs after the
    rest (ON_USERS), and POST /auth/logout last, with a login of its own: it revokes the one it is sent
    with."""
    def schema(headers: dict, stateful: bool = True):
        return schemathesis.openapi.from_dict(document, config=config(base_url, headers, world, stateful=stateful))

    return [*failures(schema(world.caller).exclude(operation_id=[*ON_USERS, "logout"])),
            *failures(schema(world.caller).include(operation_id=ON_USERS)),
            *failures(schema(world.logout, stateful=False).include(operation_id="logout"))]  # no sequence of one


def failures(schema) -> list[str]:
    """Every failed check and every error of one run of schemathesis's engine, each with a curl line
    that repeats it (tokens filtered out)."""
    found = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            found += [f"{event.recorder.label}: {check.name}: {check.failure_info.failure.title}:"
                      f" {check.failure_info.failure.message}\n{check.failure_info.code_sample}"
                      for checks in event.recorder.checks.values() for check in checks
                      if check.status == Status.FAILURE and check.failure_info]
        elif isinstance(event, events.NonFatalError):
            found.append(f"{event.label}: {event.info.title}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            found.append(f"schemathesis failed: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            found += [f"{f.operation}: {f.title}: {f.message}" for f in event.failures]
            if event.stop_reason != StopReason.COMPLETED:
                found.append(f"the run stopped early: {event.stop_reason.value}")
    return found


@pytest.mark.parametrize("role", ROLES)
async def test_fuzzed_requests_of_each_role_get_only_answers_the_document_declares(system, document, world, role):
    # In a thread: the server under test runs in this test's event loop.
    found = await asyncio.to_thread(fuzz, document, str(system.base_url), world)
    assert not found, f"{len(found)} failures:\n\n" + "\n\n".join(sorted(set(found)))


async def test_the_fuzzer_fails_on_answers_the_document_does_not_declare(system, document):
    """The checks above are really made: a document wrong about a few answers is caught on each count."""
    wrong = copy.deepcopy(document)
    del wrong["paths"]["/auth/me"]["get"]["responses"]["401"]
    health = wrong["paths"]["/health"]["get"]["responses"]["200"]
    health["content"] = {"text/plain": health["content"]["application/json"]}
    ready = wrong["paths"]["/ready"]["get"]["responses"]["200"]
    ready["content"]["application/json"]["schema"] = {"type": "object", "properties": {"status": {"type": "integer"}}}
    ready["headers"]["X-Fuzz"] = {"required": True, "schema": {"type": "string"}}
    nobody = World({}, {}, [], [], [])
    schema = schemathesis.openapi.from_dict(wrong, config=config(str(system.base_url), {}, nobody))
    found = await asyncio.to_thread(failures, schema.include(operation_id=["me", "health", "ready"]))
    assert {check for check in CONFORMANCE if any(f": {check}: " in line for line in found)} == set(CONFORMANCE)
