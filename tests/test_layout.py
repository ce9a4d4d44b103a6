"""The package's structural rules (STYLE.md §1 and §5), checked on the source of euclidnn/.

Each test parses every module with :mod:`ast` (only ``euclidnn.kernels``, for its ``__all__``,
and ASE's classes, to ask which of their attributes are settable, are imported) and fails with
the list of every place that breaks its rule, as ``path:line what``, so one run shows all of
them; each check is also run on small snippets that must and must not pass it:

- no function or method over 80 lines, except argument parsers (≥ 5 ``add_argument`` calls);
- no ``hasattr`` / ``getattr``-with-default on a model config, and no asking an object whether
  it has a ``config``: models answer through :class:`euclidnn.models.Potential`;
- no ``matplotlib.use``: plots are drawn on ``matplotlib.figure.Figure``;
- no write to an attribute of an ASE object that ASE does not expose as settable;
- no import circle among euclidnn modules (at import time: module-level imports);
- the layer rules of STYLE.md §1 (which layer may import which), over every import; kernels
  see only torch, numpy and the standard library, and are called through their public names;
- library code never starts the CLI as a program (``python -m euclidnn.cli``).

Imports: an edge goes from a module to each euclidnn module it imports, ``from p import m``
naming the submodule ``p.m`` when it is one and the package ``p`` otherwise; relative imports
are resolved. *Module-level* imports (also inside ``try``/``if`` at module level, but not under
``if TYPE_CHECKING:``) run at import time: a circle among them is an import-order bug, and
:func:`test_no_import_circles` forbids it. Imports inside functions run late and cannot
half-initialise a module, so circles that close only through one are a separate test,
:func:`test_no_lazy_import_circles_across_layers`, with the lazy edges marked: such a circle
within one layer is allowed (``o3``: ``Irreps.D_from_angles`` needs ``wigner_D``, which needs
spherical harmonics of ``Irreps``: one concept split over files), one that crosses layers is
a layering error. The layer rules count every import, lazy or not, and those under
``TYPE_CHECKING`` too: a dependency is a dependency.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "euclidnn"
MAX_FUNCTION_LINES = 80
PARSER_MIN_ADD_ARGUMENT = 5


# --- the modules and their syntax trees -------------------------------------------------------


@functools.cache
def modules() -> dict[str, Path]:
    """Every module of the package: dotted name → file (a package's name → its __init__)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


@functools.cache
def tree(module: str) -> ast.Module:
    path = modules()[module]
    return ast.parse(path.read_text(), filename=str(path))


def where(module: str, node: ast.AST) -> str:
    """``euclidnn/x/y.py:line`` of a node."""
    path = modules().get(module)
    return f"{path.relative_to(PACKAGE.parent) if path else module}:{node.lineno}"


def layer(module: str) -> str:
    """The top-level part of euclidnn a module belongs to: ``o3``, ``data``, ``units``, …
    (the package's own __init__ / __main__ are ``euclidnn``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else "euclidnn"


def _functions(node: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for child in ast.walk(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield child


def _scope_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of one scope (module or function body), not descending into nested
    functions or classes."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            stack.extend(ast.iter_child_nodes(node))


# --- imports ----------------------------------------------------------------------------------


class Import(NamedTuple):
    source: str  # importing module
    target: str  # imported euclidnn module
    line: int
    lazy: bool  # inside a function: runs when the function does, not at import time
    type_checking: bool  # under `if TYPE_CHECKING:`


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (resolving ``from .x import``)."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".")
    if modules()[module].name != "__init__.py":
        package = package[:-1]  # a plain module's package is its parent
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    known = modules()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in known:
                yield alias.name
        return
    base = _absolute(module, node)
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        if submodule in known:
            yield submodule
        elif base in known:
            yield base


@functools.cache
def imports() -> tuple[Import, ...]:
    """Every import of a euclidnn module by a euclidnn module."""
    found = []

    def visit(module: str, node: ast.AST, lazy: bool, type_checking: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            for target in _targets(module, node):
                if target != module:
                    found.append(Import(module, target, node.lineno, lazy, type_checking))
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(module, child, lazy, True)
            for child in node.orelse:
                visit(module, child, lazy, type_checking)
            return
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(module, child, inner, type_checking)

    for module in modules():
        visit(module, tree(module), False, False)
    return tuple(found)


def _cycles(edges: list[Import]) -> list[list[Import]]:
    """One circle of imports through each strongly connected group of modules (Tarjan)."""
    graph: dict[str, list[Import]] = {}
    for edge in edges:
        graph.setdefault(edge.source, []).append(edge)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(node: str) -> None:  # recursion depth ≤ number of modules (~150)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in graph.get(node, []):
            if edge.target not in index:
                connect(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    circles = []
    for group in groups:  # shortest way back to the group's first module (breadth first)
        start = min(group)
        paths: dict[str, list[Import]] = {start: []}
        frontier = [start]
        circle = None
        while frontier and circle is None:
            following = []
            for node in frontier:
                for edge in sorted(graph.get(node, []), key=lambda e: (e.target, e.line)):
                    if edge.target == start:
                        circle = paths[node] + [edge]
                        break
                    if edge.target in group and edge.target not in paths:
                        paths[edge.target] = paths[node] + [edge]
                        following.append(edge.target)
                if circle:
                    break
            frontier = following
        circles.append(circle)
    return circles


def _describe(circle: list[Import]) -> str:
    steps = [
        f"{e.source} ({modules()[e.source].relative_to(PACKAGE.parent)}:{e.line}"
        + (", inside a function)" if e.lazy else ")")
        for e in circle
    ]
    return " -> ".join(steps + [circle[0].source])


def test_no_import_circles():
    """Module-level imports form no circle (a circle fails or half-initialises a module
    depending on which one is imported first)."""
    edges = [e for e in imports() if not e.lazy and not e.type_checking]
    assert edges, "no imports found: the parser is broken"
    circles = _cycles(edges)
    assert not circles, "import circles:\n" + "\n".join(map(_describe, circles))


def test_no_lazy_import_circles_across_layers():
    """Counting imports inside functions too, no circle leaves its layer: a lazy import that
    closes a circle between layers hides a layering problem."""
    circles = _cycles([e for e in imports() if not e.type_checking])
    across = [c for c in circles if len({layer(e.source) for e in c}) > 1]
    assert not across, "import circles across layers through lazy imports:\n" + "\n".join(
        map(_describe, across)
    )


def test_the_cycle_finder_finds_a_circle():
    edges = [Import("a", "b", 1, False, False), Import("b", "c", 2, False, False)]
    assert _cycles(edges) == []
    (circle,) = _cycles(edges + [Import("c", "a", 3, True, False)])
    assert [e.source for e in circle] == ["a", "b", "c"]


# --- STYLE.md §1: who may import whom --------------------------------------------------------

# Every layer may import itself and the leaf modules `units` (constants) and `files` (atomic
# writes), except `kernels` and `o3`, which see torch and numpy only.
LEAVES = {"units", "files"}
ALLOWED = {
    "o3": {"kernels"},  # kernels: public functions only (test_kernels_are_called_publicly)
    "nn": {"o3", "kernels"},
    "kernels": set(),
    "data": {"o3", "kernels"} | LEAVES,  # never nn or models
    "models": {"o3", "nn", "data", "kernels"} | LEAVES,
    "train": {"o3", "nn", "data", "models"} | LEAVES,
    "md": {"o3", "data", "models", "export"} | LEAVES,  # export: the LAMMPS engine only
    "learn": {"o3", "nn", "data", "models", "train", "md"} | LEAVES,
    "export": {"o3", "nn", "data", "models", "kernels"} | LEAVES,
    "symmetry": {"o3", "data"} | LEAVES,  # nn, models: the trainer (SYMMETRY_TRAINER)
    "interpret": {"data", "models"} | LEAVES,
    "testing": {"o3", "data", "models"} | LEAVES,
    "units": set(),
    "files": set(),
    "cli": None,  # everything
    "euclidnn": None,  # the curated re-exports and `python -m euclidnn`
}
# the symmetry-breaking trainer fits a small model
SYMMETRY_TRAINER = {"euclidnn.symmetry.order_parameter": {"nn", "models"}}


def test_every_layer_has_a_rule():
    assert {layer(m) for m in modules()} <= set(ALLOWED), "a new layer needs a rule in ALLOWED"


def _layer_violations(edges) -> Iterator[str]:
    for edge in edges:
        source, target = layer(edge.source), layer(edge.target)
        allowed = ALLOWED[source]
        if allowed is None or target == source:
            continue
        if target not in allowed | SYMMETRY_TRAINER.get(edge.source, set()):
            path = modules().get(edge.source)
            label = path.relative_to(PACKAGE.parent) if path else edge.source
            yield f"{label}:{edge.line} {source} imports {edge.target}"


def test_layers_import_only_what_style_allows():
    broken = list(_layer_violations(imports()))
    assert not broken, "imports against STYLE.md §1:\n" + "\n".join(broken)


@pytest.mark.parametrize(
    "source, target, allowed",
    [
        ("euclidnn.data.graph", "euclidnn.models.schnet", False),  # data never imports models
        ("euclidnn.data.graph", "euclidnn.nn.radial", False),
        ("euclidnn.kernels.conv", "euclidnn.o3.irreps", False),  # kernels: torch, numpy only
        ("euclidnn.md.pimd", "euclidnn.cli.serve", False),  # md never imports cli
        ("euclidnn.models.schnet", "euclidnn.train.loop", False),
        ("euclidnn.symmetry.detect", "euclidnn.models.schnet", False),
        ("euclidnn.symmetry.order_parameter", "euclidnn.models.schnet", True),
        ("euclidnn.models.schnet", "euclidnn.nn.radial", True),
        ("euclidnn.cli.train", "euclidnn.train.loop", True),
    ],
)
def test_the_layer_rules(source, target, allowed):
    edge = Import(source, target, 1, lazy=True, type_checking=False)
    assert (not list(_layer_violations([edge]))) == allowed


def _foreign_imports(module: str, syntax: ast.Module) -> Iterator[str]:
    """Imports of anything but torch, numpy, the standard library and euclidnn.kernels."""
    for node in ast.walk(syntax):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue  # relative imports stay inside kernels
        for name in names:
            top = name.split(".")[0]
            if top in ("torch", "numpy", "__future__") or top in sys.stdlib_module_names:
                continue
            if name == "euclidnn.kernels" or name.startswith("euclidnn.kernels."):
                continue
            yield f"{where(module, node)} imports {name}"


def test_kernels_see_only_torch_numpy_and_the_standard_library():
    broken = [
        line
        for module in modules()
        if layer(module) == "kernels"
        for line in _foreign_imports(module, tree(module))
    ]
    assert not broken, "kernels import more than torch and numpy:\n" + "\n".join(broken)
    bad = "import ctypes\nimport torch\nfrom euclidnn.kernels.build import Library\nimport ase\n"
    assert len(list(_foreign_imports("example", ast.parse(bad)))) == 1


def _kernel_internals(module: str, syntax: ast.Module) -> Iterator[str]:
    from euclidnn import kernels

    public = set(kernels.__all__)
    aliases = set()  # names bound to the euclidnn.kernels package
    for node in ast.walk(syntax):
        if isinstance(node, ast.ImportFrom):
            base = _absolute(module, node)
            names = [a.name for a in node.names]
            if base == "euclidnn":
                aliases |= {a.asname or a.name for a in node.names if a.name == "kernels"}
            elif base == "euclidnn.kernels" and not set(names) <= public:
                yield f"{where(module, node)} from {base} import {', '.join(names)}"
            elif base.startswith("euclidnn.kernels."):
                yield f"{where(module, node)} from {base} import {', '.join(names)}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("euclidnn.kernels."):
                    yield f"{where(module, node)} import {alias.name}"
                elif alias.name == "euclidnn.kernels" and alias.asname:
                    aliases.add(alias.asname)
    for node in ast.walk(syntax):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr not in public
        ):
            yield f"{where(module, node)} kernels.{node.attr} is not public"


def test_kernels_are_called_publicly():
    """Outside kernels/, only `euclidnn.kernels` itself is imported, and only names in its
    ``__all__`` are used (never a submodule or a private helper): STYLE.md §1."""
    broken = [
        line
        for module in modules()
        if layer(module) != "kernels"
        for line in _kernel_internals(module, tree(module))
    ]
    assert not broken, "kernels' internals used from outside:\n" + "\n".join(broken)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from euclidnn import kernels\nkernels.convolve(x)\n", 0),
        ("from euclidnn.kernels import Edges, filter_conv\n", 0),
        ("from euclidnn import kernels as k\nk._SUFFIX\n", 1),
        ("from euclidnn.kernels.checks import float_tensor\n", 1),
        ("import euclidnn.kernels.build\n", 1),
    ],
)
def test_the_kernel_internals_check(source, expected):
    assert len(list(_kernel_internals("euclidnn.models.example", ast.parse(source)))) == expected


_CLI = re.compile(r"^euclidnn(\.cli(\.__main__)?)?$")


def _cli_starts(module: str, syntax: ast.Module) -> Iterator[str]:
    """``[…, "-m", "euclidnn.cli", …]``, ``"python -m euclidnn …"``, ``runpy.run_module(
    "euclidnn.cli")``: the ways to start the CLI as a program."""
    for node in ast.walk(syntax):
        items = []
        if isinstance(node, ast.List | ast.Tuple):
            items = node.elts
        elif isinstance(node, ast.Call):
            items = node.args
            if isinstance(node.func, ast.Attribute | ast.Name) and ast.unparse(node.func).endswith(
                "run_module"
            ):
                items = [ast.Constant("-m"), *node.args]
        values = [i.value if isinstance(i, ast.Constant) else None for i in items]
        for flag, name in zip(values, values[1:]):
            if flag == "-m" and isinstance(name, str) and _CLI.match(name):
                yield f"{where(module, node)} starts {name!r}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.search(r"-m\s+euclidnn(\.cli(\.__main__)?)?(?![\w.])", node.value):
                yield f"{where(module, node)} starts {node.value!r}"


def test_library_code_never_starts_the_cli():
    """Nothing outside cli/ runs ``python -m euclidnn.cli`` (or ``euclidnn``): cli is the top
    floor; library code calls the function instead (STYLE.md §5)."""
    broken = [
        line
        for module in modules()
        if layer(module) not in ("cli", "euclidnn")
        for line in _cli_starts(module, tree(module))
    ]
    assert not broken, "library code that starts the CLI:\n" + "\n".join(broken)


@pytest.mark.parametrize(
    "source, expected",
    [
        ('cmd = [sys.executable, "-m", "euclidnn.cli", "serve", path]\n', 1),
        ('subprocess.run(f"python -m euclidnn serve {path}", shell=True)\n', 1),
        ('runpy.run_module("euclidnn.cli", run_name="__main__")\n', 1),
        ('cache = Path.home() / ".cache" / "euclidnn"\n', 0),
        ('cmd = [sys.executable, "-m", "pytest", "euclidnn"]\n', 0),
        ('"""python -m euclidnn.md.client MODEL"""\n', 0),  # md's own entry point
    ],
)
def test_the_cli_start_check(source, expected):
    assert len(list(_cli_starts("example", ast.parse(source)))) == expected


# --- STYLE.md §5: function size, duck typing, global state, other libraries' objects --------


def _add_argument_calls(function: ast.AST) -> int:
    return sum(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "add_argument"
        for node in ast.walk(function)
    )


def _long_functions(module: str, syntax: ast.Module) -> Iterator[str]:
    """Functions and methods (nested ones too) longer than ``MAX_FUNCTION_LINES``, from ``def``
    to their last line (docstring included; decorators not)."""
    for function in _functions(syntax):
        lines = function.end_lineno - function.lineno + 1
        if lines <= MAX_FUNCTION_LINES:
            continue
        if _add_argument_calls(function) >= PARSER_MIN_ADD_ARGUMENT:
            continue  # an argument parser: one call per option, long by nature
        yield f"{where(module, function)} {function.name}: {lines} lines"


def test_functions_are_at_most_80_lines():
    long = [line for module in modules() for line in _long_functions(module, tree(module))]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_the_function_length_check():
    def function(name: str, lines: int, indent: str = "") -> str:
        body = "".join(f"{indent}    x{i} = {i}\n" for i in range(lines - 1))
        return f"{indent}def {name}():\n{body}"

    parser = "def parser(p):\n" + "".join(f"    p.add_argument('--o{i}')\n" for i in range(90))
    source = function("long", 81) + "class A:\n" + function("method", 81, "    ")
    source += function("fits", 80) + parser
    found = list(_long_functions("example", ast.parse(source)))
    assert [line.split()[1] for line in found] == ["long:", "method:"]


def _is_config(node: ast.expr) -> bool:
    """A model config by its name: ``config``, ``cfg``, ``*_config``, or ``x.config``."""
    if isinstance(node, ast.Name):
        return node.id in ("config", "cfg") or node.id.endswith("_config")
    return isinstance(node, ast.Attribute) and node.attr in ("config", "cfg")


def _names_config(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value in ("config", "cfg")


def _config_duck_typing(module: str, syntax: ast.Module) -> Iterator[str]:
    for node in ast.walk(syntax):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        name, args = node.func.id, node.args
        if name not in ("hasattr", "getattr") or not args:
            continue
        duck = name == "hasattr" or len(args) >= 3
        if (_is_config(args[0]) and duck) or (len(args) > 1 and _names_config(args[1])):
            yield f"{where(module, node)} {ast.unparse(node)}"


def test_no_duck_typing_of_model_configs():
    """``hasattr(config, …)``, ``getattr(config, …, default)`` and ``hasattr(model,
    "config")`` ask a model what it is; the :class:`~euclidnn.models.Potential` interface
    answers instead (STYLE.md §5). ``getattr(config, name)`` without a default, a lookup of a
    field that must exist, is allowed."""
    broken = [line for m in modules() for line in _config_duck_typing(m, tree(m))]
    assert not broken, "duck typing of model configs:\n" + "\n".join(broken)


@pytest.mark.parametrize(
    "source, expected",
    [
        ('if hasattr(config, "r_max"): pass\n', 1),
        ('r = getattr(model.config, "r_max", 5.0)\n', 1),
        ('if hasattr(self.model.config, "lmax"): pass\n', 1),
        ('c = getattr(model, "config", None)\n', 1),
        ("x = getattr(model_config, name, None)\n", 1),
        ("for part in key.split('.'):\n    config = getattr(config, part)\n", 0),
        ("v = getattr(config.data, key)\n", 0),
        ('if hasattr(module, "weight"): pass\n', 0),
    ],
)
def test_the_config_duck_typing_check(source, expected):
    assert len(list(_config_duck_typing("example", ast.parse(source)))) == expected


def _matplotlib_use(module: str, syntax: ast.Module) -> Iterator[str]:
    mpl, use = {"matplotlib"}, set()  # names bound to matplotlib, and to matplotlib.use
    for node in ast.walk(syntax):
        if isinstance(node, ast.Import):
            mpl |= {a.asname or a.name for a in node.names if a.name == "matplotlib"}
        elif isinstance(node, ast.ImportFrom) and node.module == "matplotlib":
            use |= {a.asname or a.name for a in node.names if a.name == "use"}
    for node in ast.walk(syntax):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if (
            isinstance(f, ast.Attribute)
            and f.attr == "use"
            and isinstance(f.value, ast.Name)
            and f.value.id in mpl
        ) or (isinstance(f, ast.Name) and f.id in use):
            yield f"{where(module, node)} {ast.unparse(node)}"


def test_no_matplotlib_use():
    """``matplotlib.use`` switches the backend for the whole process (STYLE.md §5)."""
    broken = [line for m in modules() for line in _matplotlib_use(m, tree(m))]
    assert not broken, "matplotlib.use in library code:\n" + "\n".join(broken)


@pytest.mark.parametrize(
    "source, expected",
    [
        ('import matplotlib\nmatplotlib.use("Agg")\n', 1),
        ('import matplotlib as mpl\nmpl.use("Agg")\n', 1),
        ('from matplotlib import use\nuse("Agg")\n', 1),
        ("from matplotlib.figure import Figure\nfig = Figure()\n", 0),
    ],
)
def test_the_matplotlib_use_check(source, expected):
    assert len(list(_matplotlib_use("example", ast.parse(source)))) == expected


# An object is an ASE object when it was made by calling a name imported from ase (a class, or
# a builder/reader function, which returns Atoms) or is a parameter annotated with an ASE class.
# Writing to its attributes is allowed only where ASE exposes the attribute as a settable
# property (Atoms.calc, .cell, .pbc, .positions, …); any other write overwrites ASE's internal
# state (Bussi.ndof, …) behind its back.


def _ase_bindings(syntax: ast.Module) -> dict[str, str]:
    """Local name → dotted ASE path, from every import of ase in the module."""
    bound = {}
    for node in ast.walk(syntax):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "ase":
                    if alias.asname:
                        bound[alias.asname] = alias.name
                    else:
                        bound["ase"] = "ase"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "ase":
                for alias in node.names:
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound


def _dotted(node: ast.expr, bound: dict[str, str]) -> str | None:
    """The ASE path of ``Name`` or ``Name.attr…`` when its root is bound from ase."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in bound:
        return ".".join([bound[node.id], *reversed(parts)])
    return None


@functools.cache
def _ase_object(path: str):
    """The object at a dotted ASE path (None where it cannot be imported)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for part in parts[cut:]:
                value = getattr(value, part)
        except AttributeError:
            return None
        return value
    return None


def _settable(path: str, attribute: str) -> bool:
    """Whether ASE exposes ``attribute`` as a settable property of what ``path`` makes (a
    class makes an instance of itself; a function, Atoms)."""
    made = _ase_object(path)
    if not inspect.isclass(made):
        made = _ase_object("ase.Atoms")
    descriptor = inspect.getattr_static(made, attribute, None)
    return isinstance(descriptor, property) and descriptor.fset is not None


def _ase_writes(module: str, syntax: ast.Module | None = None) -> Iterator[str]:
    syntax = tree(module) if syntax is None else syntax
    bound = _ase_bindings(syntax)
    if not bound:
        return
    scopes = [syntax, *_functions(syntax)]
    for scope in scopes:
        made: dict[str, str] = {}  # unparsed expression → ASE path of what made it
        if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
            for arg in scope.args.args + scope.args.kwonlyargs:
                path = _dotted(arg.annotation, bound) if arg.annotation else None
                if path:
                    made[arg.arg] = path
        nodes = sorted(_scope_nodes(scope), key=lambda n: getattr(n, "lineno", 0))
        for node in nodes:
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
                path = _dotted(node.value.func, bound)
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if path and isinstance(target, ast.Name | ast.Attribute):
                        made[ast.unparse(target)] = path
            writes = []
            if isinstance(node, ast.Assign):
                writes = [t for t in node.targets if isinstance(t, ast.Attribute)]
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                writes = [node.target] if isinstance(node.target, ast.Attribute) else []
            for target in writes:
                owner = ast.unparse(target.value)
                if owner in made and not _settable(made[owner], target.attr):
                    yield f"{where(module, node)} {ast.unparse(target)} = … ({made[owner]})"
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "setattr"
                and len(node.args) >= 2
                and ast.unparse(node.args[0]) in made
            ):
                yield f"{where(module, node)} {ast.unparse(node)}"


def test_no_writes_to_attributes_of_ase_objects():
    broken = [line for module in modules() for line in _ase_writes(module)]
    assert not broken, "writes to ASE objects' internal attributes:\n" + "\n".join(broken)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from ase.md.bussi import Bussi\nd = Bussi(a, 1.0)\nd.ndof = 3\n", 1),
        ("from ase import Atoms\ndef f(a: Atoms):\n    a.calc = 1\n    a._x = 2\n", 1),
        ("import ase.build\nm = ase.build.molecule('H2O')\nm.pbc = True\n", 0),
        ("from ase.md.langevin import Langevin\ndef f():\n    d = Langevin()\n    d.fr = 1\n", 1),
        ("from ase.md.bussi import Bussi\nself.md = Bussi(a)\nself.md.ndof = 1\n", 1),
        ("from ase.md.bussi import Bussi\nd = Bussi(a)\nsetattr(d, 'ndof', 1)\n", 1),
        ("from ase import Atoms\na = Atoms('H2')\na.calc = c\na.cell = [3, 3, 3]\n", 0),
        ("import numpy as np\nd = np.zeros(3)\nd.shape = (3, 1)\n", 0),
    ],
)
def test_the_ase_write_check_sees_writes(source, expected):
    assert len(list(_ase_writes("example", ast.parse(source)))) == expected
