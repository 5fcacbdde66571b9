"""The `orders` command line."""

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from events.settings import ConfigError, settings
from workers.preflight import BROKER, DATABASE, PORT, REACHING, SECRET, SERVER, SOURCES, check

log = logging.getLogger("orders")


def _migrate(_: argparse.Namespace) -> None:
    from events.db import migrate

    applied = asyncio.run(migrate(settings().database_url))
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))


def _metrics_directory(port: int) -> None:
    """Where the API processes keep their counts for /metrics to sum (prometheus_client's multiprocess
    mode): PROMETHEUS_MULTIPROC_DIR, or one per user and port; emptied, so an earlier run's counts
    do not add up with this one's. Set before any API process imports prometheus_client."""
    import getpass
    import tempfile
    from pathlib import Path

    default = Path(tempfile.gettempdir()) / f"orders-metrics-{getpass.getuser()}-{port}"
    directory = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or default)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def _api(args: argparse.Namespace) -> None:
    import uvicorn

    from api.transport import server_options
    from events.context import logging_config

    _metrics_directory(args.port)
    s = settings()
    # log_config: uvicorn applies it in every worker process, which starts with logging unconfigured
    uvicorn.run("api.app:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
                timeout_graceful_shutdown=5, log_level=s.log_level.lower(), access_log=False,
                log_config=logging_config(s.log_level, s.log_format), **server_options())


def _relay(_: argparse.Namespace) -> None:
    from workers.relay import Relay
    from workers.runtime import run_until_signal

    s = settings()
    relay = Relay(s.database_url, s.rabbitmq_url, batch_size=s.relay_batch_size, poll_seconds=s.relay_poll_seconds,
                  max_events_per_message=s.relay_max_events_per_message, partitions=s.projection_partitions,
                  linger=s.relay_linger_seconds)
    run_until_signal(relay.run)


def _worker(args: argparse.Namespace) -> None:
    from projections import registry
    from workers.consumer import ProjectionConsumer
    from workers.runtime import run_until_signal

    s = settings()
    if args.name == "scraper":
        from workers.scrape_worker import ScraperWorker

        run_until_signal(ScraperWorker(s.database_url, s.rabbitmq_url, sources_file=s.scraper_sources,
                                       timeout=s.scraper_timeout, retries=s.scraper_retries).run)
        return
    if args.name == "expiry":
        from workers.expiry import Expiry

        run_until_signal(Expiry(s.database_url, timeout=s.order_payment_timeout).run)
        return
    if args.name == "fulfilment":
        from workers.fulfilment import Fulfilment

        worker = Fulfilment(s.database_url, ship_after=s.fulfilment_ship_after,
                            deliver_after=s.fulfilment_deliver_after)
        run_until_signal(worker.run)
        return
    consumer = ProjectionConsumer(registry()[args.name], s.database_url, s.rabbitmq_url,
                                  max_attempts=s.projection_max_attempts, retry_seconds=s.projection_retry_seconds,
                                  partitions=s.projection_partitions)
    run_until_signal(consumer.run)


def _scrape(args: argparse.Namespace, error: Callable[[str], NoReturn]) -> None:
    from events.scrapes import ScrapeFailed
    from workers.scrape_watch import watch
    from workers.scrape_worker import publish_request
    from workers.scraper import ScrapeRequest

    if not (args.source or args.url):
        error("name --source, --url, or both")
    request = ScrapeRequest(source=args.source, url=args.url, max_pages=args.max_pages,
                            max_products=args.max_products, follow=args.follow)
    request_id = asyncio.run(publish_request(settings().rabbitmq_url, request))
    print(f"published scrape request {request_id} to exchange orders.commands, routing key scrape.requested")
    if not args.wait:
        print(f"its run's events have correlation id {request_id} (GET /admin/events?correlation_id={request_id})")
        return
    outcome = asyncio.run(watch(settings().database_url, request_id, lambda line: print(line, flush=True),
                                args.timeout))
    if outcome is None:
        sys.exit(f"no news of request {request_id} for {args.timeout:g}s: is `orders worker scraper` running?")
    if isinstance(outcome, ScrapeFailed):
        sys.exit(1)


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _http_url(text: str) -> str:
    from workers.sources import check_url

    try:
        return check_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _known_source(name: str) -> str:
    """A source the scraper worker knows: the same files it loads (shipped, and SCRAPER_SOURCES)."""
    from workers import sources

    try:
        known = sources.load(settings().scraper_sources)
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"cannot read the sources: {exc}") from None
    if name not in known:
        raise argparse.ArgumentTypeError(f"unknown source {name!r}; known: {', '.join(sorted(known))}")
    return name


def _scrape_redrive(_: argparse.Namespace) -> None:
    from workers import topology

    queue = topology.SCRAPER_QUEUE
    moved = asyncio.run(topology.redrive(settings().rabbitmq_url, queue))
    print(f"moved {moved} message(s) from {topology.dlq(queue)} back to {queue}")


def _status(_: argparse.Namespace) -> None:
    import psycopg

    from projections.status import connect, database_status, with_queues

    async def collect():
        broker = await connect(settings().rabbitmq_url)
        try:
            async with await psycopg.AsyncConnection.connect(settings().database_url, autocommit=True) as conn:
                return await with_queues(await database_status(conn), broker)
        finally:
            if broker is not None:
                await broker.close()

    rows = asyncio.run(collect())
    print(f"{'projection':<12} {'checkpoint':>10} {'head':>10} {'behind':>8} {'lag s':>8} {'queued':>8} {'dlq':>6}")
    for r in rows:
        print(f"{r.name:<12} {r.checkpoint:>10} {r.head:>10} {r.events_behind:>8} {r.lag_seconds:>8.2f}"
              f" {'' if r.queued is None else r.queued:>8} {'' if r.dead_lettered is None else r.dead_lettered:>6}")


def _rebuild(args: argparse.Namespace) -> None:
    from events.base import UnknownEventType
    from projections.rebuild import rebuild
    from workers.progress import EventProgress

    try:
        with EventProgress("rebuild") as progress:
            result = asyncio.run(rebuild(settings().database_url, args.names or None, verify=args.verify,
                                         dry_run=args.dry_run, processes=args.processes, progress=progress))
    except ValueError as exc:
        sys.exit(str(exc))
    except UnknownEventType as exc:  # the log holds an event this code cannot read: an operator's matter
        where = f" {exc.where}" if exc.where else ""
        sys.exit(f"rebuild stopped: unknown event type {exc.type_name!r}{where}; nothing was swapped in"
                 " (run a version of the code that knows the type, then rebuild)")
    rate = result["events"] / max(result["seconds"], 1e-9)
    others = result["log_events"] - result["events"]
    print(f"replayed {result['events']:,} events into the read tables in {result['seconds']:.1f}s"
          f" ({rate:,.0f} events/s)" + (" (dry run: nothing swapped)" if args.dry_run else "; swapped in")
          + (f"; the log's {others:,} other events feed no read table" if others else ""))
    for table, rows in result["differences"].items():
        print(f"  {table}: {'equal to the live table' if rows == 0 else f'{rows} rows differ from the live table'}")
        for example in result.get("examples", {}).get(table, []):
            print(f"    {example}")
    if any(result["differences"].values()):
        sys.exit(1)


def _redrive(args: argparse.Namespace) -> None:
    from projections import registry
    from workers import topology

    if args.name not in (known := registry()):  # before the broker answers with a closed channel
        sys.exit(f"unknown projection(s): {args.name}; known: {', '.join(known)}")
    moved = asyncio.run(topology.redrive(settings().rabbitmq_url, topology.projection_queue(args.name)))
    print(f"moved {moved} message(s) from projections.{args.name}.dlq back to projections.{args.name}")


def _asyncapi(_: argparse.Namespace) -> None:
    from workers.asyncapi import render

    sys.stdout.write(render())


def _refuse(message: str, code: int = 2) -> NoReturn:
    """One line on stderr and the exit code: 2 for a configuration that cannot work (which `orders run`
    does not restart) or input the API would refuse too, 1 for the rest."""
    print(f"orders: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _password(from_stdin: bool) -> str:
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        _refuse("no terminal to ask for the password on: pipe it in and pass --password-stdin")
    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        _refuse("the passwords differ")
    return password


def _accounts(command: Callable, actor: str) -> None:
    """Run an account command (events.commands.accounts) with a pool of one connection; refuse what the
    API would refuse with the same words."""
    from events.base import Meta
    from events.db import make_pool
    from events.errors import Conflict, Invalid, NotFound

    async def run() -> None:
        pool = make_pool(settings().database_url, min_size=1, max_size=1)
        await pool.open()
        try:
            await command(pool, Meta(actor=actor))
        finally:
            await pool.close()

    try:
        asyncio.run(run())
    except Invalid as exc:
        _refuse(f"{exc.field}: {exc.detail}")
    except (Conflict, NotFound) as exc:
        _refuse(exc.detail, code=1)


def _create_admin(args: argparse.Namespace) -> None:
    from events.commands.accounts import register
    from events.errors import Invalid
    from events.passwords import Passwords
    from events.users import canonical_email

    try:  # before asking for a password
        canonical_email(args.email)
    except Invalid as exc:
        _refuse(f"{exc.field}: {exc.detail}")
    password = _password(args.password_stdin)

    async def create(pool, meta) -> None:
        user = await register(pool, Passwords(settings()), email=args.email, password=password, name=args.name,
                              role="admin", meta=meta)
        print(f"created admin {user.email} ({user.id})")

    _accounts(create, "cli:create-admin")


def _promote(args: argparse.Namespace) -> None:
    from events.commands import accounts

    async def promote(pool, meta) -> None:
        user = await accounts.promote(pool, await accounts.find(pool, args.email), meta)
        print(f"{user.email} ({user.id}) is an active admin")

    _accounts(promote, "cli:promote")


def components(host: str, port: int, fulfilment: bool = False) -> list[tuple[str, list[str]]]:
    from projections import registry

    extra = [("worker fulfilment", ["worker", "fulfilment"])] if fulfilment else []
    return [("api", ["api", "--host", host, "--port", str(port)]), ("relay", ["relay"])] + [
        (f"worker {name}", ["worker", name]) for name in [*registry(), "scraper", "expiry"]
    ] + extra


def _run(args: argparse.Namespace) -> None:
    from events.db import migrate
    from workers.runtime import run_until_signal
    from workers.supervisor import Child, supervise

    asyncio.run(migrate(settings().database_url))
    # The supervisor has checked the services; a component restarted during an outage rides it out
    # rather than failing its own check (exit 2), which would stop the whole system.
    children = [Child(name, ["--supervised", *argv])
                for name, argv in components(args.host, args.port, args.with_fulfilment)]
    failed = run_until_signal(lambda stop: supervise(children, stop))
    if failed:
        _refuse(failed)


# What each command checks before it starts (workers/preflight.py): only what it uses.
_WORKER_NEEDS = {"scraper": {DATABASE, BROKER, SOURCES}, "expiry": {DATABASE}, "fulfilment": {DATABASE}}


def _needs(args: argparse.Namespace) -> set[str]:
    if args.command == "worker":
        return _WORKER_NEEDS.get(args.name, {DATABASE, BROKER})
    if args.command == "scrape" and args.wait:
        return args.needs | {DATABASE}
    return args.needs


class _Parser(argparse.ArgumentParser):
    """Refuses bad arguments in one line, with exit code 2, like every other refusal of `orders`."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    from projections import registry

    p = _Parser(prog="orders", description="Event-sourced order backend over RabbitMQ.")
    p.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)  # a child of `orders run`
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create the database if missing and apply sql/ migrations").set_defaults(
        func=_migrate, needs={SERVER})
    run = sub.add_parser("run", help="migrate, then API + relay + workers under one supervisor")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--with-fulfilment", action="store_true", help="also run the demo fulfilment worker")
    run.set_defaults(func=_run, needs={SECRET, SERVER, BROKER, PORT, SOURCES})
    api = sub.add_parser("api", help="the HTTP API alone")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=_at_least_one, default=1, help="API processes (it is stateless)")
    api.set_defaults(func=_api, needs={SECRET, DATABASE, BROKER, PORT})
    sub.add_parser("relay", help="the outbox relay alone").set_defaults(func=_relay, needs={DATABASE, BROKER})
    worker = sub.add_parser("worker", help="one worker: users, catalog, orders (projections), scraper, expiry,"
                                           " fulfilment")
    worker.add_argument("name", choices=[*registry(), "scraper", "expiry", "fulfilment"])
    worker.set_defaults(func=_worker)
    projections = sub.add_parser("projections", help="read tables: status, rebuild, dead letters")
    psub = projections.add_subparsers(dest="projections_command", required=True)
    psub.add_parser("status", help="checkpoint, head, events behind, lag and queues per projection").set_defaults(
        func=_status, needs={DATABASE, BROKER})
    rebuild = psub.add_parser("rebuild", help="replay the event store into fresh tables and swap them in live")
    rebuild.add_argument("names", nargs="*", help="projections (default: all)")
    rebuild.add_argument("--verify", action="store_true", help="compare the rebuilt tables with the live ones")
    rebuild.add_argument("--dry-run", action="store_true", help="build and verify, swap nothing")
    rebuild.add_argument("--processes", type=int, metavar="N",
                         help="processes that fold at once (default: one per core from 100,000 events on)")
    rebuild.set_defaults(func=_rebuild, needs={DATABASE})
    redrive = psub.add_parser("redrive", help="send a projection's dead letters back to its queue")
    redrive.add_argument("name")
    redrive.set_defaults(func=_redrive, needs={BROKER})
    sub.add_parser("asyncapi", help="print the AsyncAPI document of every exchange, queue and message").set_defaults(
        func=_asyncapi, needs=set())
    scrape = sub.add_parser("scrape", help="publish a scrape request (the scraper worker runs it) or redrive dead ones")
    scrape.add_argument("--source", type=_known_source, help="a source name from the sources file")
    scrape.add_argument("--url", type=_http_url,
                        help="a start URL: a product page or a listing; with --source, that source's rules on it")
    scrape.add_argument("--max-pages", type=_at_least_one, metavar="N",
                        help="listing pages to walk at most (default: the source's, 50)")
    scrape.add_argument("--max-products", type=_at_least_one, metavar="N",
                        help="products to record at most (default: the source's, 10000)")
    scrape.add_argument("--follow", action="store_true",
                        help="crawl every link of the host breadth-first, within the limits")
    scrape.add_argument("--wait", action="store_true",
                        help="follow the run: print its progress and outcome, exit 1 if it failed")
    scrape.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                        help="with --wait: give up after this long without news of the run (default 300)")
    scrape.set_defaults(func=lambda args: _scrape(args, scrape.error), needs={BROKER})
    # Not required, so that `orders scrape --source NAME` still publishes a request.
    ssub = scrape.add_subparsers(dest="scrape_command", metavar="[redrive]")
    ssub.add_parser("redrive", help="send dead-lettered scrape requests back to scraper.requests").set_defaults(
        func=_scrape_redrive, needs={BROKER})
    users = sub.add_parser("users", help="manage accounts").add_subparsers(dest="users_command", required=True)
    admin = users.add_parser("create-admin", help="bootstrap an admin (the API never lets anyone register as admin)")
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", default="Administrator")
    admin.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    admin.set_defaults(func=_create_admin, needs={DATABASE})
    promote = users.add_parser("promote", help="make an existing user an active admin (reactivated if need be)")
    promote.add_argument("--email", required=True)
    promote.set_defaults(func=_promote, needs={DATABASE})
    return p


def main(argv: list[str] | None = None) -> None:
    from events.context import setup_logging

    try:
        args = parser().parse_args(argv)
        s = settings()
        setup_logging(s.log_level, s.log_format)
        needs = _needs(args) - (REACHING if args.supervised else set())
        check(s, needs, host=getattr(args, "host", None), port=getattr(args, "port", None))
    except ConfigError as exc:
        _refuse(str(exc))
    args.func(args)


if __name__ == "__main__":
    main()
