"""`orders run`: every component as a child process, restarted with backoff when it dies.

SIGINT or SIGTERM stops the children (SIGTERM, then SIGKILL after a grace period) and exits 0.
Children die with the supervisor even if it is killed outright (PR_SET_PDEATHSIG).
"""

import asyncio
import ctypes
import logging
import signal
import sys
import time

from workers.runtime import pause

log = logging.getLogger("orders.supervisor")

GRACE_SECONDS = 8.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the supervisor still stops its children on a normal exit


class Child:
    def __init__(self, name: str, argv: list[str]):
        self.name, self.argv = name, argv
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.cli", *self.argv, preexec_fn=_die_with_parent
        )
        log.info("started %s (pid %d)", self.name, self.process.pid)

    async def keep_running(self, stop: asyncio.Event) -> None:
        backoff = 1.0
        while not stop.is_set():
            await self.start()
            started = time.monotonic()
            waiter = asyncio.ensure_future(self.process.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if stop.is_set():
                waiter.cancel()
                return
            code = self.process.returncode
            if time.monotonic() - started > 30:
                backoff = 1.0  # it ran fine for a while: a fresh failure, not a crash loop
            self.restarts += 1
            log.warning("%s exited with code %s; restarting in %.0fs", self.name, code, backoff)
            await pause(stop, backoff)
            backoff = min(backoff * 2, 30)

    async def terminate(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), GRACE_SECONDS)
        except asyncio.TimeoutError:
            log.warning("%s did not stop in %.0fs; killing it", self.name, GRACE_SECONDS)
            process.kill()
            await process.wait()


async def supervise(children: list[Child], stop: asyncio.Event) -> None:
    tasks = [asyncio.create_task(c.keep_running(stop)) for c in children]
    await stop.wait()
    log.info("stopping %d components", len(children))
    await asyncio.gather(*(c.terminate() for c in children))
    await asyncio.gather(*tasks, return_exceptions=True)
    log.info("stopped")
