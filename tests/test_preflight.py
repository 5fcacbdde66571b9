"""Every `orders` command checks its configuration before it starts anything: one line naming the
setting and what to do, exit code 2; `orders run` stops everything when a component fails its check."""

import subprocess
import sys
import time

import pytest

from tests.support import free_port
from workers.supervisor import Child, supervise


def orders(services, *argv: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workers.cli", *argv], env=services.env(**env), capture_output=True,
                          text=True, timeout=60)


def refused(result: subprocess.CompletedProcess) -> str:
    """The one line a refused command printed."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr.strip()


def test_orders_run_without_a_jwt_secret_outside_dev_mode_starts_nothing_and_says_what_to_set(services):
    started = time.monotonic()
    line = refused(orders(services, "run", "--port", str(free_port()), ORDERS_DEV_MODE="0"))
    assert line.startswith("orders: JWT_SECRET is not set: set it to a random string of 32+ bytes")
    assert "ORDERS_DEV_MODE=1" in line
    assert time.monotonic() - started < 15  # nothing was started, so nothing had to be stopped


def test_an_unreachable_service_is_named_with_its_host_and_port(services):
    closed = free_port()
    line = refused(orders(services, "relay", DATABASE_URL=f"postgresql://postgres@127.0.0.1:{closed}/orders"))
    assert line == (f"orders: DATABASE_URL: no PostgreSQL answers at 127.0.0.1:{closed} (connection refused);"
                    " start it, or set DATABASE_URL to where it runs")
    line = refused(orders(services, "projections", "status", RABBITMQ_URL=f"amqp://guest:guest@127.0.0.1:{closed}/"))
    assert line.startswith(f"orders: RABBITMQ_URL: no RabbitMQ answers at 127.0.0.1:{closed} (connection refused)")


def test_a_missing_virtual_host_or_database_says_how_to_make_it(services):
    line = refused(orders(services, "api", "--port", str(free_port()),
                          RABBITMQ_URL="amqp://guest:guest@127.0.0.1:5672/no_such_vhost"))
    assert "has no virtual host 'no_such_vhost'" in line and "rabbitmqctl add_vhost no_such_vhost" in line
    line = refused(orders(services, "worker", "expiry",
                          DATABASE_URL="postgresql://postgres@127.0.0.1:5432/orders_never_migrated"))
    assert 'database "orders_never_migrated" does not exist; run `orders migrate`' in line


@pytest.mark.parametrize(("env", "says"), [
    ({"LOG_LEVEL": "verbose"}, "orders: LOG_LEVEL='verbose' is not valid: expected one of DEBUG, INFO"),
    ({"LOG_FORMAT": "xml"}, "orders: LOG_FORMAT='xml' is not valid: expected one of json, text"),
    ({"ACCESS_TOKEN_MINUTES": "soon"}, "orders: ACCESS_TOKEN_MINUTES='soon' is not valid: expected a whole number"),
])
def test_a_bad_setting_is_refused_by_its_environment_variable_name(services, env, says):
    assert refused(orders(services, "migrate", **env)).startswith(says)


def test_a_port_in_use_is_refused_before_the_api_starts(services):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = refused(orders(services, "api", "--port", str(port)))
    assert line.startswith(f"orders: --port {port}: cannot listen on 127.0.0.1:{port}")


async def test_a_component_that_fails_its_check_stops_every_component_and_is_not_restarted(services, tmp_path,
                                                                                          monkeypatch):
    import asyncio

    broken = tmp_path / "sources.toml"
    broken.write_text("[sources.x\n")
    for name, value in services.env(SCRAPER_SOURCES=str(broken)).items():
        monkeypatch.setenv(name, value)
    steady = Child("worker expiry", ["--supervised", "worker", "expiry"])
    failing = Child("worker scraper", ["--supervised", "worker", "scraper"])
    reason = await asyncio.wait_for(supervise([steady, failing], asyncio.Event()), 60)
    assert reason.startswith(f"worker scraper: SCRAPER_SOURCES='{broken}': cannot read the sources")
    assert failing.restarts == 0
    assert steady.process.returncode is not None  # stopped with it
