"""`orders run`: every component as a child process, restarted with backoff when it dies.

SIGINT or SIGTERM stops the children (SIGTERM, then SIGKILL after a grace period) and exits 0.
Children die with the supervisor even if it is killed outright (PR_SET_PDEATHSIG). A child that
exits 2 failed its configuration check: restarting it cannot help, so every child is stopped and
`orders run` exits 2 with the child's line.
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
CONFIG_FAILURE = 2  # the exit code of `orders` when its configuration check fails (workers/cli.py)
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
        self._stderr: asyncio.Task[str] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.cli", *self.argv, stderr=asyncio.subprocess.PIPE, preexec_fn=_die_with_parent
        )
        self._stderr = asyncio.create_task(_forward(self.process.stderr))
        log.info("started %s (pid %d)", self.name, self.process.pid)

    async def keep_running(self, stop: asyncio.Event) -> str | None:
        """Start the child again each time it dies, until `stop`. Returns the reason when the child
        failed its configuration check instead."""
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
                return None
            code = self.process.returncode
            if code == CONFIG_FAILURE:
                line = await asyncio.wait_for(self._stderr, GRACE_SECONDS)
                log.error("%s failed its configuration check; stopping every component", self.name)
                return f"{self.name}: {line.removeprefix('orders: ')}"
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


async def _forward(stream: asyncio.StreamReader) -> str:
    """Pass a child's stderr through as it comes; return its last line (a failed check's reason)."""
    tail = b""
    while chunk := await stream.read(65536):
        sys.stderr.buffer.write(chunk)
        sys.stderr.buffer.flush()
        tail = (tail + chunk)[-4096:]
    lines = tail.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


async def supervise(children: list[Child], stop: asyncio.Event) -> str | None:
    """Run every child until `stop`, or until one fails its configuration check: then stop them all
    and return its reason."""
    tasks = [asyncio.create_task(c.keep_running(stop)) for c in children]
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
    failure = next((reason for t in done if t is not stopping and (reason := t.result())), None)
    stop.set()  # the other children's loops end; they restart nothing more
    log.info("stopping %d components", len(children))
    await asyncio.gather(*(c.terminate() for c in children))
    await asyncio.gather(stopping, *tasks, return_exceptions=True)
    log.info("stopped")
    return failure
