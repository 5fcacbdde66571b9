"""The README cannot drift from the code: its quick start runs as written, and its settings table
names every setting the code reads."""

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

from events.db import drop_database
from events.settings import _ENV
from tests.support import eventually, free_port

pytestmark = pytest.mark.slow

README = (Path(__file__).parent.parent / "README.md").read_text()
MARKER = "<!-- quickstart: tests/test_readme.py runs this block as it is written -->"


def quick_start() -> str:
    return re.match(r"\s*```sh\n(.*?)```", README.split(MARKER, 1)[1], re.S)[1]


def members(group: int) -> list[int]:
    """The live processes of a process group (zombies are not alive)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.fixture
async def fresh(services):
    """A database and a vhost of this test's own, new as a newcomer's: no accounts, no login counted
    against the rate limit, no messages; `orders run` creates the database."""
    name = f"{services.vhost}_readme"
    await services.admin.create_vhost(name)
    url = make_conninfo(services.database_url, dbname=name)
    try:
        yield url, services.rabbitmq_url.rsplit("/", 1)[0] + "/" + name
    finally:
        await drop_database(url)
        await services.admin.delete_vhost(name)


async def test_the_quick_start_places_and_pays_an_order_on_the_first_try(services, fresh, tmp_path):
    database_url, rabbitmq_url = fresh
    env = services.env(DATABASE_URL=database_url, RABBITMQ_URL=rabbitmq_url, PORT=str(free_port()),
                       PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    del env["ORDERS_DEV_MODE"]  # as in a newcomer's shell: the block turns it on itself
    # Its own session, so that the `orders run` it leaves running in the background can be stopped with it.
    shell = await asyncio.create_subprocess_exec(
        "bash", "-e", "-o", "pipefail", "-c", quick_start(), cwd=tmp_path, env=env, start_new_session=True,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(shell.communicate(), 180)
    finally:
        if members(shell.pid):
            os.killpg(shell.pid, signal.SIGTERM)

        async def stopped() -> bool:
            return not members(shell.pid)
        await eventually(stopped, timeout=30, what="the quick start's `orders run` to stop")
    log = (tmp_path / "orders.log").read_text() if (tmp_path / "orders.log").exists() else ""
    assert shell.returncode == 0, f"{err.decode()}\n--- orders.log ---\n{log[-3000:]}"
    answers = out.decode()
    assert "created admin admin@example.com" in answers
    assert answers.count('"role":"seller"') == 1 and answers.count('"role":"buyer"') == 1
    assert answers.rstrip().endswith("}") and '"status":"paid"' in answers and '"total":"39.98"' in answers


def test_the_settings_table_names_every_setting_the_code_reads():
    table = README.split("## Settings", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    read = {*_ENV, "PROMETHEUS_MULTIPROC_DIR", "TEST_DATABASE_URL", "TEST_RABBITMQ_HOST", "TEST_RABBITMQ_ADMIN"}
    assert read - named == set()
