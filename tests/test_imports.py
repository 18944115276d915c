"""Packages import one way: app.py -> loop/ -> serving/, align/ -> common/ -> storage/ (ARCHITECTURE
in README's Layout). Every import of every module counts, those inside functions too: an import moved
into a function to dodge a cycle is still a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"app", "align", "bench", "common", "loop", "serving", "storage", "tests"}
# What each of our packages may import of ours, besides itself.
ALLOWED = {
    "storage": set(),
    "common": {"storage"},
    "serving": {"common", "storage"},
    "align": {"common", "storage"},
    "loop": {"align", "common", "serving", "storage"},
    "bench": {"align", "app", "common", "loop", "serving", "storage"},
    "app": {"align", "common", "loop", "serving", "storage"},
}


def module_files(package: str) -> list[Path]:
    return [ROOT / "app.py"] if package == "app" else sorted((ROOT / package).rglob("*.py"))


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in the file, relative ones resolved."""
    module = path.relative_to(ROOT).with_suffix("").parts
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            name = module[0] if node.level else (node.module or "").split(".")[0]
            found.append((node.lineno, name))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_is_below_it(package):
    allowed = ALLOWED[package] | {package}
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}" for path in module_files(package)
             for line, name in imported_packages(path) if name in OURS and name not in allowed]
    assert wrong == []


def test_the_walk_sees_imports_inside_functions(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "align").mkdir()
    (tmp_path / "align" / "round.py").write_text("def f():\n    from serving.model import x\n    from . import y\n")

    assert imported_packages(tmp_path / "align" / "round.py") == [(2, "serving"), (3, "align")]
