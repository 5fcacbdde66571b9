"""The Litestar application factory: the one place that wires the API process."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware

from api import admin, auth, cart, health, openapi, orders, products, users
from api.conditional import head_as_get
from api.consistency import Projected
from api.metrics import correlate, measure_requests, metrics
from api.problems import HANDLERS
from api.security import Tokens
from api.wakeup import RelayWaker, wake_relay_after_commands
from events.db import make_pool
from events.passwords import Passwords
from events.settings import Settings, settings as env_settings
from projections.catalog import CatalogProjector
from projections.orders import OrdersProjector

ROUTES = [health.health, health.ready, metrics, *auth.ROUTES, *users.ROUTES, *products.ROUTES, *orders.ROUTES,
          *cart.ROUTES, *admin.ROUTES]


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or env_settings()
    waker = RelayWaker()
    state = State({
        "settings": settings,
        "tokens": Tokens(settings),  # refuses a weak JWT secret outside dev mode, before anything starts
        "passwords": Passwords(settings),
        "waker": waker,
        "projected": Projected(settings.database_url, on_wait=waker.poke),
        "catalog_projector": CatalogProjector(),
        "orders_projector": OrdersProjector(),
    })

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = make_pool(settings.database_url, min_size=2, max_size=16)
        await pool.open()
        app.state.pool = pool
        await app.state.projected.start()
        app.state.waker.start(pool)
        try:
            yield
        finally:
            await app.state.waker.stop()
            await app.state.projected.stop()
            await pool.close()

    # Routes are public by their `opt`, which the OpenAPI document reads too; /schema is Litestar's own.
    authentication = DefineMiddleware(auth.BearerAuth, exclude_from_auth_key="public", exclude_http_methods=["OPTIONS"],
                                      exclude=["^/schema"])
    app = Litestar(
        route_handlers=[*ROUTES, openapi.assets()],
        lifespan=[lifespan],
        state=state,
        middleware=[wake_relay_after_commands, authentication],
        exception_handlers=HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        cors_config=CORSConfig(allow_origins=list(settings.cors_origins)) if settings.cors_origins else None,
        openapi_config=openapi.config(),
        logging_config=None,  # keep the JSON logging of workers/runtime.py: Litestar's own would replace it
    )
    # Around the whole app, not as route middleware: Litestar answers an error raised in a middleware (the
    # bearer auth's 401) or in routing (404) from its outermost exception handler, past any route middleware,
    # so only out here is every response measured with the status it was sent with and tagged with its id.
    app.asgi_handler = correlate(measure_requests(head_as_get(app.asgi_handler)))
    openapi.finish(app)
    return app
