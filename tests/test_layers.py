"""Dependencies run one way. Every import of ours, function-level ones included, read with `ast`:

- the pure vocabulary (events/ but the modules below) imports nothing of ours outside it;
- the write side (events' store, database, guard tables, command handlers) imports only events/ (and
  sql/, the migrations it applies);
- projections/ imports events/ (and itself);
- api/ imports events/ and projections/ (and itself);
- workers/ may import anything; sql/ is data.
"""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "events", "projections", "workers", "sql")

# The modules of events/ that do IO or hold the write side's state: the rest is pure vocabulary.
WRITE_SIDE = {"events.store", "events.db", "events.passwords", "events.product_state", "events.rows",
              "events.providers", "events.media"}


def layer(module: str) -> str:
    top = module.split(".")[0]
    if top != "events":
        return top
    return "write" if module in WRITE_SIDE or module.startswith("events.commands") else "vocabulary"


ALLOWED = {
    "vocabulary": {"vocabulary"},
    "write": {"vocabulary", "write", "sql"},  # sql/ holds the migrations the write side applies
    "projections": {"vocabulary", "write", "projections"},
    "api": {"vocabulary", "write", "projections", "api"},
    "workers": {"vocabulary", "write", "projections", "api", "workers", "sql"},
    "sql": {"sql"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of ours in the file, wherever it stands."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from events import store` imports the module events.store; `from events.base import Meta`
            # names something in events.base (resolved below)
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] in PACKAGES]
    return found


def _resolve(name: str) -> str:
    """The module `name` refers to: itself, or its package when it names something inside a module."""
    while name and not ((ROOT / name.replace(".", "/")).with_suffix(".py").exists()
                        or (ROOT / name.replace(".", "/") / "__init__.py").exists()):
        name = name.rpartition(".")[0]
    return name


def violations() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            importer = module_name(path)
            for line, name in imports(path):
                target = _resolve(name)
                if target and layer(target) not in ALLOWED[layer(importer)]:
                    found.append(f"{path.relative_to(ROOT)}:{line}: {importer} ({layer(importer)})"
                                 f" -> {target} ({layer(target)})")
    return sorted(set(found))


def test_every_import_runs_down_the_layers():
    assert violations() == []


def test_the_check_sees_function_level_imports_and_names_the_arrow(tmp_path, monkeypatch):
    (tmp_path / "events").mkdir()
    (tmp_path / "api").mkdir()
    (tmp_path / "events" / "__init__.py").write_text("")
    (tmp_path / "api" / "__init__.py").write_text("")
    (tmp_path / "api" / "app.py").write_text("")
    (tmp_path / "events" / "orders.py").write_text("def f():\n    from api import app\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert violations() == ["events/orders.py:2: events.orders (vocabulary) -> api.app (api)"]
