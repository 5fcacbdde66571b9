"""The Litestar application factory: the one place that wires the API process."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Request, Response, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import CacheControlHeader, State
from litestar.middleware import DefineMiddleware
from litestar.static_files import create_static_files_router

from api import admin, auth, cart, health, images, inputs, openapi, orders, payments, products, users
from api.conditional import head_as_get
from api.consistency import Projected
from api.metrics import correlate, measure_requests, metrics
from api.probes import Broker, Recent
from api.problems import HANDLERS
from api.security import Tokens
from api.sessions import Sessions
from api.transport import guard_body, security_headers, trust_proxies
from api.wakeup import RelayWaker, wake_relay_after_commands
from events.db import make_pool
from events.media import LocalStorage, Storage, storage
from events.passwords import Passwords
from events.providers import Provider, StripeProvider, TestProvider
from events.settings import Settings, check_payments, check_storage, webhook_secret
from events.settings import settings as env_settings
from projections.catalog import CatalogProjector
from projections.orders import OrdersProjector

API_CONNECTIONS = "orders-api"  # the pool's application_name in pg_stat_activity

ROUTES = [health.health, health.ready, metrics, *auth.ROUTES, *users.ROUTES, *products.ROUTES, *images.ROUTES,
          *orders.ROUTES, *cart.ROUTES, *admin.ROUTES]


def routes(settings: Settings, files: Storage) -> list:
    """Every route; some exist only with some settings (the test provider's, the local media files)."""
    test_provider = settings.payment_provider == "test"
    uploads = Router("/", route_handlers=images.UPLOADS, request_max_body_size=images.upload_limit(
        settings.max_image_bytes))
    media = [create_static_files_router(
        "/media", directories=[files.root], opt={"public": True, "database": False}, include_in_schema=False,
        cache_control=CacheControlHeader(public=True, max_age=31536000, immutable=True))] \
        if isinstance(files, LocalStorage) else []
    return [*ROUTES, uploads, *media, *payments.routes(settings),
            *(orders.TEST_PROVIDER_ROUTES if test_provider else [])]


def provider(settings: Settings) -> Provider:
    check_payments(settings)  # a real provider without its key or secret: refused before anything starts
    if settings.payment_provider == "stripe":
        return StripeProvider(settings.payment_api_key)
    return TestProvider(webhook_secret(settings))


async def before_request(request: Request) -> Response | None:
    """OPTIONS is answered with every method of the resource: Litestar 2's own answer lists only the
    methods of the first handler registered for a path (litestar#4169, fixed in 3.0 only), while the
    route knows them all. Any other request's input is checked first (api/inputs.py)."""
    if request.method == "OPTIONS":
        route = next(r for r in request.app.routes if r.path_format == request.scope["path_template"])
        methods = set(route.methods) | ({"HEAD"} if "GET" in route.methods else set())  # api/conditional.py
        return Response(None, status_code=204, headers={"Allow": ", ".join(sorted(methods))})
    await inputs.check(request)
    return None


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or env_settings()
    check_storage(settings)
    files = storage(settings)
    waker = RelayWaker()
    projected = Projected(settings.database_url, on_wait=waker.poke)
    state = State({
        "settings": settings,
        "tokens": Tokens(settings),  # refuses a weak JWT secret outside dev mode, before anything starts
        "passwords": Passwords(settings),
        "waker": waker,
        "projected": projected,
        "sessions": Sessions(projected),
        "catalog_projector": CatalogProjector(),
        "orders_projector": OrdersProjector(),
        "broker": Broker(settings.rabbitmq_url),
        "readiness": Recent(),
        "system_figures": Recent(),
        "provider": provider(settings),
        "webhook_secret": webhook_secret(settings),
        "storage": files,
    })

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = make_pool(settings.database_url, min_size=2, max_size=16, name=API_CONNECTIONS, check=True,
                         timeout=settings.database_timeout)
        await pool.open()
        app.state.pool = pool
        await files.start()
        await app.state.projected.start()
        app.state.waker.start(pool)
        try:
            yield
        finally:
            await app.state.waker.stop()
            await app.state.projected.stop()
            await app.state.broker.close()
            await files.close()
            await pool.close()

    # Routes are public by their `opt`, which the OpenAPI document reads too; /schema is Litestar's own.
    authentication = DefineMiddleware(auth.BearerAuth, exclude_from_auth_key="public", exclude_http_methods=["OPTIONS"],
                                      exclude=["^/schema"])
    app = Litestar(
        route_handlers=[*routes(settings, files), openapi.assets()],
        lifespan=[lifespan],
        state=state,
        middleware=[wake_relay_after_commands, authentication],
        exception_handlers=HANDLERS,
        before_request=before_request,
        request_max_body_size=settings.max_body_bytes,
        cors_config=CORSConfig(allow_origins=list(settings.cors_origins)) if settings.cors_origins else None,
        openapi_config=openapi.config(),
        logging_config=None,  # keep our JSON logging (events/context.py): Litestar's own would replace it
    )
    # Around the whole app, not as route middleware: Litestar answers an error raised in a middleware (the
    # bearer auth's 401) or in routing (404) from its outermost exception handler, past any route middleware,
    # so only out here is every response measured with the status it was sent with and tagged with its id.
    # guard_body is inside the measuring, which counts a client that left mid-body as the 499 it answers.
    guarded = guard_body(head_as_get(app.asgi_handler), settings.request_body_timeout,
                         max(settings.max_body_bytes, images.upload_limit(settings.max_image_bytes)))
    app.asgi_handler = trust_proxies(correlate(measure_requests(security_headers(guarded))),
                                     settings.forwarded_allow_ips)
    openapi.finish(app)
    return app
