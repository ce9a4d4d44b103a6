"""The dependency rule of STYLE.md for md (<- models, data; never the CLI, a floor above), and
the patterns it moved away from: no CLI command started, no matplotlib backend chosen."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "euclidnn" / "md"
ALLOWED = {"euclidnn.models", "euclidnn.data", "euclidnn.md", "euclidnn.files"}


def euclidnn_imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.add("euclidnn.md")
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {".".join(n.split(".")[:2]) for n in names if n.startswith("euclidnn")}


def test_md_imports_only_models_and_data_and_starts_no_cli_command():
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        tree = ast.parse(path.read_text())
        extra = euclidnn_imports(tree) - ALLOWED
        assert not extra, f"{path.name} imports {sorted(extra)}"
        strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)]
        assert not [s for s in strings if isinstance(s, str) and s.startswith("euclidnn.cli")]
        assert "matplotlib.use" not in path.read_text(), path.name
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                length = node.end_lineno - node.lineno + 1
                assert length < 80, f"{path.name}: {node.name} has {length} lines"
