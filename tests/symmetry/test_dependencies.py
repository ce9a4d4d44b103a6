"""The dependency rule of STYLE.md: symmetry <- o3, data (models only in the trainer)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "euclidnn" / "symmetry"
ALLOWED = {"euclidnn.o3", "euclidnn.data", "euclidnn.symmetry"}
TRAINER = {"order_parameter.py": {"euclidnn.nn", "euclidnn.models"}}


def _euclidnn_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.add("euclidnn.symmetry")
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {".".join(n.split(".")[:2]) for n in names if n.startswith("euclidnn")}


def test_symmetry_imports_only_o3_and_data():
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        extra = _euclidnn_imports(path) - ALLOWED - TRAINER.get(path.name, set())
        assert not extra, f"{path.name} imports {sorted(extra)}"


def test_modules_are_small():
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) < 400, path.name
