"""`orders projections rebuild`: replay the event store into fresh shadow tables with the live
projectors' own code (their `evolve`, folded in memory, written with COPY), catch up with the live
consumers' `fold_batch`, then swap them in while the API keeps serving.

The shadow tables live in a schema `rebuild` with the same names, and the replay runs with
`search_path = rebuild, public`: the projectors' unqualified SQL writes the shadow tables and still
reads `public.events`. The swap locks the live tables, replays the last events, and moves the shadow
tables into `public` in one transaction, so a reader sees the old table or the new one, never a
half-built one; it waits (it does not fail) for the moment of the swap.
"""

import asyncio
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import suppress

import psycopg
from psycopg import AsyncConnection

from events import store
from projections import registry
from projections.base import Projector, fold_batch
from projections.bulk import SCHEMA, bulk, bulk_in_process, init_worker, matches

CATCH_UP_BATCH = 20000  # events per transaction of the catch-up
PARALLEL_FROM = 100_000  # events: below this, starting processes costs more than it saves

Progress = Callable[[int, int], None]  # (events folded so far, events to fold)


async def _replay(conn: AsyncConnection, projectors: list[Projector],
                  after: tuple[int, int]) -> tuple[tuple[int, int], int, int]:
    """Catch up from `after` through the live consumers' `fold_batch`; returns where it ended, how
    many events it folded and how many it read (the log's others feed none of `projectors`)."""
    folded = read = 0
    while batch := await store.read_all(conn, after, CATCH_UP_BATCH):
        async with conn.transaction():
            for projector in projectors:
                mine = [r for r in batch if matches(projector, r.type)]
                if mine:
                    await fold_batch(conn, projector, mine, strict=True)  # unknown types fail loudly
                folded += len(mine)
        after = batch[-1].checkpoint
        read += len(batch)
    return after, folded, read


async def _shadow_tables(conn: AsyncConnection, tables: list[str]) -> dict[str, list[str]]:
    """Create the shadow tables without indexes; return, per table, the DDL that adds the live
    table's indexes and constraints to it once it is loaded. Read with search_path = public, so a
    foreign key names its table unqualified and later resolves to the shadow one."""
    await conn.execute("SET search_path = public")
    finish = {}
    for table in tables:
        cur = await conn.execute(
            "SELECT 'ALTER TABLE ' || %(shadow)s || ' ADD CONSTRAINT ' || quote_ident(conname) || ' '"
            "       || pg_get_constraintdef(oid)"
            " FROM pg_constraint WHERE conrelid = %(live)s::regclass AND contype IN ('p', 'u', 'x', 'f')"
            " UNION ALL"
            " SELECT replace(pg_get_indexdef(indexrelid), %(on_live)s, %(on_shadow)s)"
            " FROM pg_index WHERE indrelid = %(live)s::regclass AND indisvalid AND indisready"
            "   AND indexrelid NOT IN (SELECT conindid FROM pg_constraint WHERE conrelid = %(live)s::regclass)",
            {"live": f"public.{table}", "shadow": f"{SCHEMA}.{table}",
             "on_live": f" ON public.{table} ", "on_shadow": f" ON {SCHEMA}.{table} "})
        finish[table] = [ddl for (ddl,) in await cur.fetchall()]
        await conn.execute(f"CREATE TABLE {SCHEMA}.{table} (LIKE public.{table} INCLUDING ALL EXCLUDING INDEXES)")
    return finish


async def _counts(conn: AsyncConnection, projectors: list[Projector], head: tuple[int, int]) -> tuple[int, dict]:
    """Events up to `head`, and how many of them each projector folds."""
    cur = await conn.execute(
        "SELECT type, count(*) FROM events WHERE (tx_id, position) <= (%s, %s) GROUP BY type", head)
    by_type = dict(await cur.fetchall())
    return sum(by_type.values()), {p.name: sum(n for t, n in by_type.items() if matches(p, t)) for p in projectors}


async def _bulk_here(conn: AsyncConnection, projectors: list[Projector], head: tuple[int, int],
                     finish: list[str], report: Callable[[int], None]) -> None:
    done = 0

    def count(n: int) -> None:
        nonlocal done
        done += n
        report(done)
    await bulk(conn, projectors, head, finish, count)


async def _bulk_in_processes(database_url: str, projectors: list[Projector], head: tuple[int, int],
                             finish: dict[str, list[str]], counts: dict[str, int], processes: int,
                             report: Callable[[int], None]) -> None:
    """Each projection split by stream hash into parts in proportion to its share of the log, the
    parts folded by `processes` processes, largest first; a projection's indexes are built as soon
    as all its parts are in, while the others still fold."""
    total = max(sum(counts.values()), 1)
    parts = {p.name: max(1, min(processes, round(2 * processes * counts[p.name] / total))) for p in projectors}
    ctx = multiprocessing.get_context("spawn")  # not fork: this process has a running loop and sockets
    progress = ctx.Value("q", 0)
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(processes, mp_context=ctx, initializer=init_worker, initargs=(progress,)) as pool:
        jobs: dict[str, list] = {p.name: [] for p in projectors}
        for name, k in sorted(((n, k) for n in parts for k in range(parts[n])),
                              key=lambda job: -counts[job[0]] / parts[job[0]]):
            jobs[name].append(loop.run_in_executor(pool, bulk_in_process, database_url, name, head, (k, parts[name])))

        async def finished(projector: Projector) -> None:
            await asyncio.gather(*jobs[projector.name])
            async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
                await conn.execute(f"SET search_path = {SCHEMA}, public")
                for ddl in (d for t in projector.tables for d in finish[t]):
                    await conn.execute(ddl)

        tasks = [asyncio.create_task(finished(p)) for p in projectors]
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, timeout=0.25)
            report(progress.value)
            if any(t.exception() for t in done):
                pool.shutdown(wait=False, cancel_futures=True)  # parts not started yet never start
        for task in tasks:
            task.result()  # a failure in any part (an unknown event type, say) fails the rebuild


async def _differences(conn: AsyncConnection, table: str, shown: int = 5) -> tuple[int, list[str]]:
    """How many rows differ between the rebuilt and the live table, and the first few of them."""
    cur = await conn.execute(
        f"SELECT (SELECT count(*) FROM (TABLE {SCHEMA}.{table} EXCEPT ALL TABLE public.{table}) a)"
        f"     + (SELECT count(*) FROM (TABLE public.{table} EXCEPT ALL TABLE {SCHEMA}.{table}) b)")
    count = (await cur.fetchone())[0]
    if not count:
        return 0, []
    cur = await conn.execute(
        f"(SELECT 'rebuilt only: ' || r::text FROM (TABLE {SCHEMA}.{table} EXCEPT ALL TABLE public.{table}) r LIMIT %s)"
        f" UNION ALL (SELECT 'live only:    ' || l::text FROM (TABLE public.{table} EXCEPT ALL TABLE {SCHEMA}.{table}) l"
        "  LIMIT %s)", (shown, shown))
    return count, [row for (row,) in await cur.fetchall()]


async def _build_and_swap(database_url: str, conn: AsyncConnection, projectors: list[Projector], tables: list[str],
                          processes: int | None, verify: bool, dry_run: bool, progress: Progress) -> dict:
    finish = await _shadow_tables(conn, tables)
    await conn.execute(f"SET search_path = {SCHEMA}, public")
    checkpoint = await store.head(conn)
    in_log, counts = await _counts(conn, projectors, checkpoint)
    folded = sum(counts.values())
    if processes is None:
        processes = (os.cpu_count() or 1) if folded >= PARALLEL_FROM else 1
    report = lambda done: progress(done, folded)  # noqa: E731
    if processes > 1:
        await _bulk_in_processes(database_url, projectors, checkpoint, finish, counts, processes, report)
    else:
        await _bulk_here(conn, projectors, checkpoint, [d for t in tables for d in finish[t]], report)
    # What arrived meanwhile, first without locks (the shadow tables are ours alone), so that the
    # live tables stay locked only for the few events that arrive during this pass.
    checkpoint, tail, read = await _replay(conn, projectors, checkpoint)
    result = {"events": folded + tail, "log_events": in_log + read, "differences": {}}
    async with conn.transaction():
        for table in tables:
            await conn.execute(f"LOCK TABLE public.{table} IN ACCESS EXCLUSIVE MODE")
        checkpoint, tail, read = await _replay(conn, projectors, checkpoint)
        result["events"] += tail
        result["log_events"] += read
        progress(result["events"], result["events"])
        if verify or dry_run:
            found = {t: await _differences(conn, t) for t in tables}
            result["differences"] = {t: count for t, (count, _) in found.items()}
            result["examples"] = {t: rows for t, (_, rows) in found.items() if rows}
        if not dry_run:
            for table in reversed(tables):  # dependents (order_lines) before what they refer to
                await conn.execute(f"DROP TABLE public.{table} CASCADE")
            for table in tables:
                await conn.execute(f"ALTER TABLE {SCHEMA}.{table} SET SCHEMA public")
            for projector in projectors:
                await store.save_checkpoint(conn, projector.name, checkpoint)
    return result


async def rebuild(database_url: str, names: list[str] | None = None, *, verify: bool = False, dry_run: bool = False,
                  progress: Progress | None = None, processes: int | None = None) -> dict:
    """Returns {"events": folded into the read tables, "log_events": read from the log (the others
    feed no read table), "seconds": ..., "differences": {table: rows} (with verify), and "examples":
    {table: a few differing rows}}. `progress(done, total)` is told of the folding as it goes and,
    at the end, of the same count as "events".

    `processes`: how many processes fold at once (default: one per projection up to the number of
    cores, once the log is long enough to be worth it)."""
    known = registry()
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise ValueError(f"unknown projection(s): {', '.join(unknown)}; known: {', '.join(known)}")
    projectors = [known[n] for n in (names or known)]
    tables = [t for p in projectors for t in p.tables]
    started = time.monotonic()
    async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.execute(f"CREATE SCHEMA {SCHEMA}")
        try:
            result = await _build_and_swap(database_url, conn, projectors, tables, processes, verify, dry_run,
                                           progress or (lambda done, total: None))
        finally:
            with suppress(psycopg.Error):  # do not hide why a rebuild failed behind a lost connection
                await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")  # what is left of a failed one
    result["seconds"] = round(time.monotonic() - started, 3)
    return result
