"""compose.yaml, read as compose reads it, since Docker does not run here (`docker compose config`
is the check on a machine that has it)."""

from pathlib import Path

import yaml

from projections import registry
from workers.cli import parser

COMPOSE = yaml.safe_load((Path(__file__).parent.parent / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
APP = {name: s for name, s in SERVICES.items() if s.get("image") == "orders-backend:local"}


def test_every_port_is_published_on_loopback_only_and_away_from_the_local_services():
    published = [port for s in SERVICES.values() for port in s.get("ports", [])]
    assert published and all(port.startswith("127.0.0.1:") for port in published)
    assert not {"127.0.0.1:5432:5432", "127.0.0.1:5672:5672", "127.0.0.1:15672:15672"} & set(published)


def test_one_image_is_built_once_and_every_app_service_runs_an_orders_command_the_cli_knows():
    assert [name for name, s in SERVICES.items() if "build" in s] == ["migrate"]
    assert all(s["pull_policy"] == "never" for name, s in APP.items() if name != "migrate")
    workers = set()
    for s in APP.values():
        program, *argv = s["command"]
        args = parser().parse_args(argv)  # exits on anything the command line would refuse
        assert program == "orders"
        if args.command == "worker":
            workers.add(args.name)
    assert workers == {*registry(), "scraper", "expiry", "fulfilment"}


def test_dev_mode_is_off_unless_asked_and_a_jwt_secret_is_required():
    environment = APP["api"]["environment"]
    assert environment["ORDERS_DEV_MODE"] == "${ORDERS_DEV_MODE:-0}"
    assert environment["JWT_SECRET"].startswith("${JWT_SECRET:?set JWT_SECRET")


def test_rabbitmq_is_a_maintained_4x_image_with_the_management_plugin():
    assert SERVICES["rabbitmq"]["image"] == "rabbitmq:4-management"


def test_the_build_context_leaves_out_the_virtualenv_git_and_caches():
    ignored = (Path(__file__).parent.parent / ".dockerignore").read_text().split()
    assert {".venv", ".git", "**/__pycache__", ".pytest_cache", ".env"} <= set(ignored)
