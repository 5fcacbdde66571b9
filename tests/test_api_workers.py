"""`orders api --workers N`: every process logs JSON lines, and /metrics counts the requests of all."""

import asyncio
import json
import re
import sys

import httpx
import pytest

from tests.support import eventually, free_port

pytestmark = pytest.mark.slow


async def get(port: int, path: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:  # a connection of its own, which any of the processes may accept
        return await http.get(f"http://127.0.0.1:{port}{path}", timeout=10)


def served(text: str, route: str) -> int:
    pattern = rf'^orders_http_requests_total{{method="GET",route="{re.escape(route)}",status="200"}} (\S+)$'
    return sum(int(float(m)) for m in re.findall(pattern, text, re.MULTILINE))


async def test_two_api_processes_log_json_lines_and_metrics_count_the_requests_of_both(services, tmp_path):
    counts = tmp_path / "metrics"
    counts.mkdir()
    (counts / "counter_1.db").write_bytes(b"an earlier run's counts")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.cli", "api", "--port", str(port), "--workers", "2",
        env=services.env(PROMETHEUS_MULTIPROC_DIR=str(counts)), stderr=asyncio.subprocess.PIPE)
    lines: list[str] = []

    async def collect():
        async for line in proc.stderr:
            lines.append(line.decode())
    reader = asyncio.create_task(collect())

    def pids_counting() -> set[str]:
        return {f.stem.split("_")[-1] for f in counts.glob("counter_*.db")}

    async def started_both() -> bool:
        return sum('"Application startup complete."' in line for line in lines) == 2 or proc.returncode is not None
    try:
        await eventually(started_both, timeout=60, what="both API processes to start")
        assert "1" not in pids_counting()  # the earlier run's file went on start
        sent = 0
        # Requests on new connections until both processes have served some (the kernel picks which).
        while sent < 4 or len(pids_counting()) < 2:
            assert (await get(port, "/health")).status_code == 200
            sent += 1
            assert sent < 200, "one process accepted every connection"
        text = (await get(port, "/metrics")).text
        assert served(text, "/health") == sent
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
        await reader
    entries = [json.loads(line) for line in lines if line.strip()]  # every line is JSON
    starts = {e["pid"] for e in entries if e["message"] == "Application startup complete."}
    assert len(starts) == 2 and pids_counting() <= {str(pid) for pid in starts}
