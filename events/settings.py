"""Settings, read once from the environment; every default works on a local machine.

A value that cannot work is refused with a ConfigError whose message is one line naming the
environment variable, what it should be, and what to do: the `orders` command prints it and exits 2.
"""

import os
import typing
from functools import cache
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

DEV_SECRET = "dev-only-secret-never-use-in-production!!"
MIN_SECRET_BYTES = 32

Positive = Annotated[int, Meta(ge=1)]
Seconds = Annotated[float, Meta(ge=0)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["json", "text"]
PaymentProvider = Literal["test", "stripe"]
# The test provider moves no money, so a key everyone can read protects nothing there; a real
# provider's webhooks are verified with the secret it gave you (PAYMENT_WEBHOOK_SECRET).
TEST_WEBHOOK_SECRET = "whsec_test_provider_only_never_for_real_payments"


class ConfigError(RuntimeError):
    """A setting that cannot work; the message says which and what to do, in one line."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = "postgresql://postgres@127.0.0.1:5432/orders"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_timeout: Annotated[float, Meta(gt=0)] = 5.0  # seconds an API request waits for a database connection (then 503)
    dev_mode: bool = False
    jwt_secret: str = DEV_SECRET
    jwt_issuer: str = "orders"
    jwt_audience: str = "orders-api"
    access_token_minutes: Positive = 15
    refresh_token_days: Positive = 7
    argon2_time_cost: Positive = 3
    argon2_memory_kib: Annotated[int, Meta(ge=8)] = 65536
    cors_origins: tuple[str, ...] = ()
    login_rate_limit: Positive = 60  # a minute per client address, successes included: an office logs many in
    register_rate_limit: Positive = 10
    login_failure_limit: Positive = 10  # failed logins per account per 15 minutes, from any address
    max_body_bytes: Positive = 1_048_576
    request_body_timeout: Annotated[float, Meta(gt=0)] = 10.0  # seconds a client has to send a request's whole body
    forwarded_allow_ips: str = ""  # proxies whose X-Forwarded-For is believed: none unless configured
    default_currency: str = "USD"
    ryw_timeout: Seconds = 2.0  # seconds a command waits for its projection (read-your-writes)
    order_payment_timeout: Seconds = 1800.0  # seconds an order may stay unpaid before it expires
    fulfilment_ship_after: Seconds = 5.0
    fulfilment_deliver_after: Seconds = 10.0
    scraper_sources: str | None = None  # a TOML file of extra sources
    scraper_timeout: Annotated[float, Meta(gt=0)] = 10.0
    scraper_retries: Annotated[int, Meta(ge=0)] = 3
    relay_batch_size: Positive = 1000
    relay_max_events_per_message: Positive = 500  # 1: one event per message, as before batching
    relay_linger_seconds: Seconds = 0.02  # under load, how long the relay lets events gather between reads
    projection_partitions: Positive = 1  # queues per projection, by a hash of the stream id
    relay_poll_seconds: Annotated[float, Meta(gt=0)] = 1.0
    projection_max_attempts: Positive = 5
    projection_retry_seconds: Seconds = 1.0  # first retry's backoff; it doubles on each attempt, up to a minute
    metrics_token: str = ""  # when set, GET /metrics needs it as a bearer token
    payment_provider: PaymentProvider = "test"
    payment_api_key: str = ""  # the provider's secret API key (Stripe: sk_...)
    payment_webhook_secret: str = ""  # signs the provider's webhooks (Stripe: whsec_...)
    media_root: str = "media"  # product images, when no S3 bucket is set
    max_image_bytes: Positive = 10_485_760
    max_image_pixels: Positive = 25_000_000  # width x height an upload may claim, checked before decoding
    s3_bucket: str = ""  # set: product images go to this S3-compatible bucket instead of MEDIA_ROOT
    s3_endpoint_url: str = ""  # another S3-compatible service than AWS (MinIO, R2, ...)
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    s3_public_url: str = ""  # where the bucket's objects are served; default: the endpoint's URL of the bucket
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "json"


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
    "PAYMENT_PROVIDER": "payment_provider",
    "PAYMENT_API_KEY": "payment_api_key",
    "PAYMENT_WEBHOOK_SECRET": "payment_webhook_secret",
    "MEDIA_ROOT": "media_root",
    "MAX_IMAGE_BYTES": "max_image_bytes",
    "MAX_IMAGE_PIXELS": "max_image_pixels",
    "S3_BUCKET": "s3_bucket",
    "S3_ENDPOINT_URL": "s3_endpoint_url",
    "S3_REGION": "s3_region",
    "S3_ACCESS_KEY_ID": "s3_access_key_id",
    "S3_SECRET_ACCESS_KEY": "s3_secret_access_key",
    "S3_PUBLIC_URL": "s3_public_url",
    "LOG_LEVEL": "log_level",
    "LOG_FORMAT": "log_format",
}

_FIELDS = {f.name: f for f in msgspec.structs.fields(Settings)}
_SWITCH = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _expected(annotation: object) -> str:
    """What a value of this type looks like, in words: 'a whole number >= 1', 'one of json, text'."""
    bounds = ""
    if typing.get_origin(annotation) is Annotated:
        annotation, *metadata = typing.get_args(annotation)
        for meta in metadata:
            for name, sign in (("ge", ">="), ("gt", ">")):
                if getattr(meta, name, None) is not None:
                    bounds = f" {sign} {getattr(meta, name):g}"
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(typing.get_args(annotation))
    return {int: "a whole number", float: "a number of seconds"}.get(annotation, "a text") + bounds


def _value(var: str, text: str) -> object:
    """The environment's text converted to the field's type, or a ConfigError naming `var`."""
    field = _FIELDS[_ENV[var]]
    if field.name == "cors_origins":
        return tuple(o.strip() for o in text.split(",") if o.strip())
    if field.name == "dev_mode":
        if text.lower() not in _SWITCH:
            raise ConfigError(f"{var}={text!r} is not valid: use 1 to turn dev mode on or 0 to leave it off")
        return _SWITCH[text.lower()]
    try:
        return msgspec.convert(text.strip().upper() if field.name == "log_level" else text.strip(), field.type,
                               strict=False)
    except msgspec.ValidationError:
        raise ConfigError(f"{var}={text!r} is not valid: expected {_expected(field.type)}; fix it, or unset"
                          f" {var} to use the default ({field.default})") from None


def from_env(env: typing.Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    # unset or empty: keep the default
    return Settings(**{field: _value(var, env[var]) for var, field in _ENV.items() if env.get(var)})


def weak_secret(secret: str) -> bool:
    return secret == DEV_SECRET or len(secret.encode()) < MIN_SECRET_BYTES


def check_secret(settings: Settings) -> None:
    """A JWT secret that can protect tokens; outside dev mode, a missing or weak one is a ConfigError."""
    secret = settings.jwt_secret
    if not settings.dev_mode and weak_secret(secret):
        problem = "is not set" if secret == DEV_SECRET else f"is shorter than {MIN_SECRET_BYTES} bytes"
        raise ConfigError(
            f"JWT_SECRET {problem}: set it to a random string of {MIN_SECRET_BYTES}+ bytes (for example"
            " `export JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')`),"
            " or set ORDERS_DEV_MODE=1 to use a built-in development key on your own machine")


def check_payments(settings: Settings) -> None:
    """A real provider needs its API key and its webhook secret; without them no payment could be
    taken or believed, so that is a ConfigError before anything starts."""
    if settings.payment_provider == "test":
        return
    for var, value, looks in (("PAYMENT_API_KEY", settings.payment_api_key, "sk_live_... or sk_test_..."),
                              ("PAYMENT_WEBHOOK_SECRET", settings.payment_webhook_secret, "whsec_...")):
        if not value.strip():
            raise ConfigError(f"{var} is not set: PAYMENT_PROVIDER={settings.payment_provider} needs it ({looks},"
                              " from the provider's dashboard), or set PAYMENT_PROVIDER=test")


def webhook_secret(settings: Settings) -> str:
    return settings.payment_webhook_secret or TEST_WEBHOOK_SECRET


def check_storage(settings: Settings) -> None:
    """S3 settings without a bucket would be ignored silently: say so instead."""
    named = [var for var, field in _ENV.items() if var.startswith("S3_") and field != "s3_region"
             and getattr(settings, field)]
    if named and not settings.s3_bucket:
        raise ConfigError(f"{named[0]} is set but S3_BUCKET is not: set S3_BUCKET to store product images in S3,"
                          f" or unset {', '.join(named)} to keep them in MEDIA_ROOT")


@cache
def settings() -> Settings:
    return from_env()
