"""The house rules that keep the code easy to carry on: no module over 450 lines, no function over 80
lines (unless listed below with its reason), no import circle between the project's modules (imports
inside functions included)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("envs", "trainables", "sweeps", "analysis")
MAX_LINES = 450
MAX_FUNCTION_LINES = 80  # a function's lines, decorators and docstring included
# "module:function" -> why it may be longer. None today: the longest are trainables/train.py:train (80)
# and analysis/report.py:write_report (75); the sweep driver's (sweeps/runner.py, rounds.py, tuner.py)
# are under the limit too, and their restructuring (one driver skeleton) keeps them so.
LONG_FUNCTIONS: dict[str, str] = {}


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def imports(found: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project's modules it imports anywhere in its file (a package's own parent not counted)."""
    graph = {}
    for name, path in found.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        graph[name] = {t for t in targets if t in found and t != name and not name.startswith(t + ".")}
    return graph


def test_no_module_is_over_the_line_limit():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"


def test_no_function_is_over_the_line_limit():
    long = {}
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - min([node.lineno, *(d.lineno for d in node.decorator_list)]) + 1
                if lines > MAX_FUNCTION_LINES and f"{name}:{node.name}" not in LONG_FUNCTIONS:
                    long[f"{name}:{node.name} (line {node.lineno})"] = lines
    assert not long, f"split these functions (over {MAX_FUNCTION_LINES} lines) or list them with a reason: {long}"
    assert set(LONG_FUNCTIONS) <= {
        f"{n}:{f.name}"
        for n, p in modules().items()
        for f in ast.walk(ast.parse(p.read_text()))
        if isinstance(f, ast.FunctionDef)
    }


def test_no_import_circle():
    graph = imports(modules())
    state, path, circles = {}, [], []

    def visit(u):
        state[u] = "open"
        path.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == "open":
                circles.append(" -> ".join(path[path.index(v) :] + [v]))
            elif v not in state:
                visit(v)
        path.pop()
        state[u] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not circles, circles
    assert "analysis.sequential" in graph["sweeps.spec"]  # the walk sees the project's imports
