"""The house keeps its own rules: small modules and short functions, in the core and every plugin."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(path for folder in ("core", "plugins", "examples") for path in (ROOT / folder).rglob("*.py")
                 if "tests" not in path.parts and "{{" not in str(path))
MODULE_LINES, FUNCTION_LINES = 400, 50


def test_every_module_is_under_400_lines():
    assert len(SOURCES) > 30  # the core and the plugins were found: a rule over nothing checks nothing
    long = {path.relative_to(ROOT): count for path in SOURCES
            if (count := len(path.read_text().splitlines())) >= MODULE_LINES}
    assert not long, long


def test_every_function_is_under_50_lines():
    long = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length >= FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.name}"] = length
    assert not long, long


PUBLIC = {"mnist_trainer", "mnist_trainer.weights", "mnist_trainer.syncbn", "mnist_trainer.download",
          "mnist_trainer.idx", "mnist_trainer.testing"}
PLUGINS = sorted(path for folder in ("plugins", "examples/plugins")
                 for path in (ROOT / folder).glob("*/mnist_trainer_*.py"))


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_plugins_import_only_the_public_api_and_never_each_other():
    """What import-linter checks for the core, checked here for the plugins: it roots only packages, and a plugin is
    one module. Public: the package itself, weights, syncbn, download, idx and testing."""
    assert len(PLUGINS) >= 15
    for path in PLUGINS:
        ours = {name for name in imported(path) if name.startswith("mnist_trainer")}
        assert ours <= PUBLIC, (f"{path.relative_to(ROOT)} imports {sorted(ours - PUBLIC)}, "
                                "which are not mnist_trainer's public API")
