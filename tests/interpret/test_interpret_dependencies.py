"""The dependency rule of STYLE.md for interpret (<- models, data; files) and small modules."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "euclidnn" / "interpret"
# euclidnn.files: the one atomic-write helper, a leaf module every layer may use
ALLOWED = {"euclidnn.models", "euclidnn.data", "euclidnn.interpret", "euclidnn.files"}


def euclidnn_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.add("euclidnn.interpret")
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {".".join(n.split(".")[:2]) for n in names if n.startswith("euclidnn")}


def test_interpret_imports_only_models_and_data():
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 4
    for path in files:
        extra = euclidnn_imports(path) - ALLOWED
        assert not extra, f"{path.name} imports {sorted(extra)}"
        assert len(path.read_text().splitlines()) < 400, path.name
