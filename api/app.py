"""The Litestar application factory: the one place that wires the API process."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin

from litestar.middleware import DefineMiddleware
from litestar.openapi.spec import Components, OAuthFlow, OAuthFlows, SecurityScheme

from api import admin, auth, cart, health, orders, products, users
from api.metrics import HttpMetrics, correlate, measure_requests, metrics
from api.consistency import Projected
from api.wakeup import RelayWaker, wake_relay_after_commands
from projections.catalog import CatalogProjector
from projections.orders import OrdersProjector
from api.problems import HANDLERS
from api.security import Passwords, Tokens
from events.db import make_pool
from events.settings import Settings, settings as env_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or env_settings()
    tokens = Tokens(settings)  # refuses a weak JWT secret outside dev mode, before anything starts
    waker = RelayWaker()

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

    return Litestar(
        route_handlers=[health.health, health.ready, *auth.ROUTES, *users.ROUTES, *products.ROUTES, *orders.ROUTES, *cart.ROUTES, *admin.ROUTES, metrics],
        lifespan=[lifespan],
        state=State({"settings": settings, "tokens": tokens, "passwords": Passwords(settings),
                     "projected": Projected(settings.database_url, on_wait=waker.poke), "catalog_projector": CatalogProjector(), "orders_projector": OrdersProjector(), "waker": waker,
                     "http_metrics": HttpMetrics()}),
        middleware=[correlate, measure_requests, wake_relay_after_commands, DefineMiddleware(auth.BearerAuth, exclude_from_auth_key="public",
                                     exclude=["^/schema", "^/health", "^/ready", "^/metrics"], exclude_http_methods=["OPTIONS"])],
        exception_handlers=HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        cors_config=CORSConfig(allow_origins=list(settings.cors_origins)) if settings.cors_origins else None,
        openapi_config=OpenAPIConfig(
            title="Orders API",
            version="0.1.0",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin(path="/swagger"), ScalarRenderPlugin(path="/")],
            components=Components(security_schemes={"bearer": SecurityScheme(
                type="oauth2", flows=OAuthFlows(password=OAuthFlow(token_url="/auth/login", scopes={})),
                description="Log in with email as username; the docs page sends the access token.",
            )}),
            security=[{"bearer": []}],
        ),
    )
