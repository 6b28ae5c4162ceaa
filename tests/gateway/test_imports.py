"""The core knows no protocol and plugins know no other plugin (STYLE.md, rule 7)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_core_never_imports_a_plugin() -> None:
    offenders = []
    for path in (ROOT / "gateway").rglob("*.py"):
        for module in imported_modules(path):
            # The loader imports the plugins *package* to discover what is in it, never a plugin.
            if module.startswith("plugins.") or (module == "plugins" and path.name != "loader.py"):
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offenders, offenders


def test_plugins_import_no_other_plugin() -> None:
    offenders = []
    plugins_dir = ROOT / "plugins"
    for plugin in (p for p in plugins_dir.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for path in plugin.rglob("*.py"):
            for module in imported_modules(path):
                parts = module.split(".")
                if parts[0] == "plugins" and len(parts) > 1 and parts[1] != plugin.name:
                    offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offenders, offenders
