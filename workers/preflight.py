"""What a command checks before it starts anything: the JWT secret, the services it talks to, the
port it listens on, the scrape sources. Each failure is a ConfigError of one line naming the setting
and what to do; the command line prints it and exits 2."""

import asyncio
import errno
import socket

import aio_pika
import aiormq
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from yarl import URL

from events.settings import ConfigError, Settings, check_payments, check_secret, check_storage
from sql import MIGRATIONS_DIR

TIMEOUT = 5.0

SECRET, SERVER, DATABASE, BROKER, PORT, SOURCES = "secret", "server", "database", "broker", "port", "sources"
REACHING = {SERVER, DATABASE, BROKER, PORT}  # the checks that ask the world rather than the settings


def _pg_address(url: str) -> tuple[str, int]:
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"DATABASE_URL is not a PostgreSQL URL ({str(exc).strip()}): use the form"
                          " postgresql://USER:PASSWORD@HOST:5432/DATABASE") from None
    return params.get("host") or "localhost", int(params.get("port") or 5432)


def _mq_address(url: str) -> tuple[str, int, str]:
    parsed = URL(url)
    if parsed.scheme not in ("amqp", "amqps") or not parsed.host:
        raise ConfigError(f"RABBITMQ_URL={url!r} is not an AMQP URL: use the form amqp://USER:PASSWORD@HOST:5672/VHOST")
    return parsed.host, parsed.port or 5672, parsed.path[1:] or "/"


async def _reach(var: str, service: str, host: str, port: int) -> None:
    """A TCP connection to host:port, or a ConfigError saying why not."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
    except (OSError, asyncio.TimeoutError) as exc:
        why = {errno.ECONNREFUSED: "connection refused"}.get(getattr(exc, "errno", None))
        if isinstance(exc, socket.gaierror):
            why = f"unknown host {host!r}"
        elif isinstance(exc, asyncio.TimeoutError):
            why = f"no answer in {TIMEOUT:g}s"
        raise ConfigError(f"{var}: no {service} answers at {host}:{port} ({why or exc.strerror or exc}); start it,"
                          f" or set {var} to where it runs") from None
    writer.close()


def _pg_reason(exc: psycopg.Error) -> str:
    """The server's own words, without libpq's preamble and hints: 'database "x" does not exist'."""
    first = str(exc).strip().splitlines()[0]
    return first.rsplit("failed: ", 1)[-1].removeprefix("FATAL:").strip()


async def postgres(url: str, *, migrated: bool) -> None:
    """The server answers as DATABASE_URL says. With `migrated`, its database exists and has every
    migration; without, only the server is needed (`orders migrate` creates the database)."""
    host, port = _pg_address(url)
    await _reach("DATABASE_URL", "PostgreSQL", host, port)
    try:
        conn = await psycopg.AsyncConnection.connect(url if migrated else make_conninfo(url, dbname="postgres"),
                                                     connect_timeout=TIMEOUT, autocommit=True)
    except psycopg.Error as exc:
        reason = _pg_reason(exc)
        todo = "run `orders migrate` to create it" if "does not exist" in reason and "database" in reason else \
            "fix DATABASE_URL"
        raise ConfigError(f"DATABASE_URL: PostgreSQL at {host}:{port} refused the connection: {reason}; {todo}") from None
    async with conn:
        if migrated:
            missing = await _missing_migrations(conn)
            if missing:
                raise ConfigError(f"DATABASE_URL: the database at {host}:{port} lacks migration(s)"
                                  f" {', '.join(missing)}; run `orders migrate`")


async def _missing_migrations(conn: psycopg.AsyncConnection) -> list[str]:
    try:
        done = {name for (name,) in await (await conn.execute("SELECT name FROM schema_migrations")).fetchall()}
    except psycopg.errors.UndefinedTable:
        done = set()
    return [p.name for p in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql")) if p.name not in done]


async def rabbitmq(url: str) -> None:
    """RabbitMQ answers as RABBITMQ_URL says, lets its user in, and has its virtual host."""
    host, port, vhost = _mq_address(url)
    await _reach("RABBITMQ_URL", "RabbitMQ", host, port)
    user = URL(url).user or "guest"
    try:
        connection = await aio_pika.connect(url, timeout=TIMEOUT)
    except aiormq.exceptions.ProbableAuthenticationError:
        raise ConfigError(f"RABBITMQ_URL: RabbitMQ at {host}:{port} refused user {user!r} (wrong user or password);"
                          " fix the URL's credentials") from None
    except (aiormq.exceptions.InvalidFrameError, aiormq.exceptions.ConnectionClosed):
        # RabbitMQ closes the handshake when the virtual host is missing or the user may not use it.
        raise ConfigError(
            f"RABBITMQ_URL: RabbitMQ at {host}:{port} has no virtual host {vhost!r} that user {user!r} may use;"
            f" create it (rabbitmqctl add_vhost {vhost} && rabbitmqctl set_permissions -p {vhost} {user}"
            " '.*' '.*' '.*') or fix the URL's path") from None
    except (aiormq.exceptions.AMQPError, OSError, asyncio.TimeoutError) as exc:
        why = exc.args[-1] if exc.args else type(exc).__name__
        raise ConfigError(f"RABBITMQ_URL: {host}:{port} does not answer as RabbitMQ ({why}); check the port"
                          " (5672 is AMQP's)") from None
    await connection.close()


def free_port(host: str, port: int) -> None:
    """Nothing else listens on host:port, so the API will be able to."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); stop what holds it"
                              " or choose another --port") from None


def sources(path: str | None) -> None:
    from workers import sources as scrape_sources

    try:
        scrape_sources.load(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"SCRAPER_SOURCES={path!r}: cannot read the sources ({exc}); fix the file or unset"
                          " SCRAPER_SOURCES") from None


def check(settings: Settings, needs: set[str], *, host: str | None = None, port: int | None = None) -> None:
    """Every check in `needs`, cheapest first; the first failure raises a ConfigError."""
    if SECRET in needs:  # what the API needs configured: its JWT key, the payment provider, image storage
        check_secret(settings)
        check_payments(settings)
        check_storage(settings)
    if SOURCES in needs:
        sources(settings.scraper_sources)
    if PORT in needs:
        free_port(host, port)

    async def services() -> None:
        if SERVER in needs or DATABASE in needs:
            await postgres(settings.database_url, migrated=DATABASE in needs)
        if BROKER in needs:
            await rabbitmq(settings.rabbitmq_url)
    asyncio.run(services())
