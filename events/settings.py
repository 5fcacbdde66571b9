"""Settings, read once from the environment; every default works on a local machine."""

import logging
import os
from functools import cache

import msgspec

log = logging.getLogger(__name__)

DEV_SECRET = "dev-only-secret-never-use-in-production!!"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = "postgresql://postgres@127.0.0.1:5432/orders"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_timeout: float = 5.0  # seconds an API request waits for a database connection (then 503)
    dev_mode: bool = False
    jwt_secret: str = DEV_SECRET
    jwt_issuer: str = "orders"
    jwt_audience: str = "orders-api"
    access_token_minutes: int = 15
    refresh_token_days: int = 7
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    cors_origins: tuple[str, ...] = ()
    login_rate_limit: int = 10  # requests per minute per client address
    register_rate_limit: int = 10
    login_failure_limit: int = 10  # failed logins per account per 15 minutes, from any address
    max_body_bytes: int = 1_048_576
    request_body_timeout: float = 10.0  # seconds a client has to send a request's whole body
    forwarded_allow_ips: str = ""  # proxies whose X-Forwarded-For is believed: none unless configured
    default_currency: str = "USD"
    ryw_timeout: float = 2.0  # seconds a command waits for its projection (read-your-writes)
    order_payment_timeout: float = 1800.0  # seconds an order may stay unpaid before it expires
    fulfilment_ship_after: float = 5.0
    fulfilment_deliver_after: float = 10.0
    scraper_sources: str | None = None  # a TOML file of extra sources
    scraper_timeout: float = 10.0
    scraper_retries: int = 3
    relay_batch_size: int = 1000
    relay_max_events_per_message: int = 500  # 1: one event per message, as before batching
    relay_linger_seconds: float = 0.02  # under load, how long the relay lets events gather between reads
    projection_partitions: int = 1  # queues per projection, by a hash of the stream id
    relay_poll_seconds: float = 1.0
    projection_max_attempts: int = 5
    projection_retry_seconds: float = 1.0  # first retry's backoff; it doubles on each attempt, up to a minute
    metrics_token: str = ""  # when set, GET /metrics needs it as a bearer token
    log_level: str = "INFO"
    log_format: str = "json"  # or "text"


_ENV = {
    "DATABASE_URL": "database_url",
    "RABBITMQ_URL": "rabbitmq_url",
    "DATABASE_TIMEOUT": "database_timeout",
    "ORDERS_DEV_MODE": "dev_mode",
    "JWT_SECRET": "jwt_secret",
    "JWT_ISSUER": "jwt_issuer",
    "JWT_AUDIENCE": "jwt_audience",
    "ACCESS_TOKEN_MINUTES": "access_token_minutes",
    "REFRESH_TOKEN_DAYS": "refresh_token_days",
    "ARGON2_TIME_COST": "argon2_time_cost",
    "ARGON2_MEMORY_KIB": "argon2_memory_kib",
    "CORS_ORIGINS": "cors_origins",
    "LOGIN_RATE_LIMIT": "login_rate_limit",
    "REGISTER_RATE_LIMIT": "register_rate_limit",
    "LOGIN_FAILURE_LIMIT": "login_failure_limit",
    "MAX_BODY_BYTES": "max_body_bytes",
    "REQUEST_BODY_TIMEOUT": "request_body_timeout",
    "FORWARDED_ALLOW_IPS": "forwarded_allow_ips",
    "DEFAULT_CURRENCY": "default_currency",
    "READ_YOUR_WRITES_TIMEOUT": "ryw_timeout",
    "ORDER_PAYMENT_TIMEOUT": "order_payment_timeout",
    "FULFILMENT_SHIP_AFTER": "fulfilment_ship_after",
    "FULFILMENT_DELIVER_AFTER": "fulfilment_deliver_after",
    "SCRAPER_SOURCES": "scraper_sources",
    "SCRAPER_TIMEOUT": "scraper_timeout",
    "SCRAPER_RETRIES": "scraper_retries",
    "RELAY_BATCH_SIZE": "relay_batch_size",
    "RELAY_POLL_SECONDS": "relay_poll_seconds",
    "RELAY_MAX_EVENTS_PER_MESSAGE": "relay_max_events_per_message",
    "RELAY_LINGER_SECONDS": "relay_linger_seconds",
    "PROJECTION_PARTITIONS": "projection_partitions",
    "PROJECTION_MAX_ATTEMPTS": "projection_max_attempts",
    "PROJECTION_RETRY_SECONDS": "projection_retry_seconds",
    "METRICS_TOKEN": "metrics_token",
    "LOG_LEVEL": "log_level",
    "LOG_FORMAT": "log_format",
}


def from_env(env: dict[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    raw: dict[str, object] = {}
    for var, field in _ENV.items():
        if not env.get(var):
            continue  # unset or empty: keep the default
        value: object = env[var]
        if field == "cors_origins":
            value = [o.strip() for o in env[var].split(",") if o.strip()]
        elif field == "dev_mode":
            value = env[var].lower() in {"1", "true", "yes", "on"}
        raw[field] = value
    # strict=False lets "15" become 15 and reports a bad value with the field's name.
    return msgspec.convert(raw, Settings, strict=False)


@cache
def settings() -> Settings:
    return from_env()
