import asyncio
import os
import signal
import subprocess
import sys

import httpx
import pytest

from tests.support import eventually, free_port

pytestmark = pytest.mark.slow


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as f:
                kids = {int(k) for k in f.read().split()}
        except FileNotFoundError:
            continue
        found |= kids
        todo.extend(kids)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


async def ready(port: int):
    try:
        async with httpx.AsyncClient() as client:
            r = await client.get(f"http://127.0.0.1:{port}/ready", timeout=2)
        return r.status_code == 200
    except httpx.HTTPError:
        return False


async def test_orders_run_becomes_ready_and_stops_cleanly_on_sigterm(services):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "workers.cli", "run", "--port", str(port)],
                            env=services.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        await eventually(lambda: ready(port), timeout=60, what="/ready to answer 200")
        async with httpx.AsyncClient() as client:  # the server options of `orders api`
            health = await client.get(f"http://127.0.0.1:{port}/health")
        assert "server" not in health.headers and health.headers["x-content-type-options"] == "nosniff"
        children = descendants(proc.pid)
        assert len(children) >= 2  # at least the API and the relay
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 15)
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.stdout.read()
    assert code == 0, output
    left = [pid for pid in children if alive(pid)]
    assert left == [], output
    assert "stopped" in output


async def test_a_component_that_dies_is_restarted(services):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "workers.cli", "run", "--port", str(port)],
                            env=services.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        await eventually(lambda: ready(port), timeout=60, what="/ready to answer 200")
        before = descendants(proc.pid)
        api = next(pid for pid in before if _cmdline(pid).endswith(f"api --host 127.0.0.1 --port {port}"))
        os.kill(api, signal.SIGKILL)

        async def replaced():
            return any(_cmdline(p).endswith(f"--port {port}") for p in descendants(proc.pid) - before)
        await eventually(replaced, timeout=30, what="a new API process")
        await eventually(lambda: ready(port), timeout=60, what="/ready again")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 15)
        output = proc.stdout.read()
    assert code == 0
    assert "exited with code -9; restarting" in output


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read().replace("\0", " ").strip()
    except FileNotFoundError:
        return ""
