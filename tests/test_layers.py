"""The dependency rule, read from the source: the foundation is at the bottom.

``gateway.domain`` and ``gateway.errors`` import nothing of ours. The adapters (``inbound``,
``outbound``, ``github_app``) may use them and nothing else of ``gateway``: what an adapter needs
of the gateway it declares itself (a Protocol) and is handed by ``gateway.flows.context``. The
GitHub emulator, once it is its own package, stands for GitHub and knows neither side.

Every import counts, wherever it is written (inside a function, under TYPE_CHECKING).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {path.parent.name for path in ROOT.glob("*/__init__.py")}
ADAPTERS = ("inbound", "outbound", "github_app")
FOUNDATION = ("gateway.domain", "gateway.errors", "gateway.addresses")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of everything the file imports, relative imports made absolute.

    ``from a.b import c`` counts as ``a.b.c``: ``c`` may be a module, and ``from gateway import
    errors`` must read as gateway.errors.
    """
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return names


def is_within(name: str, modules) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


def violations(paths, allowed) -> list[str]:
    """Imports of our packages, outside ``allowed``, as ``file:line: name``."""
    found = []
    for path in paths:
        for line, name in imported(path):
            ours = name.split(".")[0] in OURS
            inside = is_within(name, (module_name(path).split(".")[0],))  # its own package
            if ours and not inside and not is_within(name, allowed):
                found.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    return found


def sources(*tops: str) -> list[Path]:
    files = []
    for top in tops:
        target = ROOT / top
        files += [target] if target.is_file() else sorted(target.rglob("*.py"))
    return files


def test_the_scan_sees_our_packages_and_their_imports():
    assert {"gateway", *ADAPTERS} <= OURS
    names = {name for path in sources("github_app") for _, name in imported(path)}
    assert "gateway.errors.PermanentError" in names          # an allowed import is read ...
    assert "github_app.errors.translate" in names           # ... and so is a relative one


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_adapters_import_only_the_foundation_of_the_gateway(adapter):
    found = violations(sources(adapter), allowed=FOUNDATION)
    assert not found, "imports of the gateway beyond its foundation:\n" + "\n".join(found)


@pytest.mark.parametrize("module", FOUNDATION)
def test_the_foundation_imports_nothing_of_ours(module):
    path = ROOT / (module.replace(".", "/") + ".py")
    found = [f"{path.relative_to(ROOT)}:{line}: {name}" for line, name in imported(path)
             if name.split(".")[0] in OURS]
    assert not found, "the foundation imports our own code:\n" + "\n".join(found)


def test_the_github_emulator_knows_neither_the_gateway_nor_its_github_adapter():
    if not (ROOT / "github_emulator").is_dir():
        pytest.skip("the emulator is not its own package (yet)")
    found = [f"{path.relative_to(ROOT)}:{line}: {name}" for path in sources("github_emulator")
             for line, name in imported(path) if is_within(name, ("gateway", "github_app"))]
    assert not found, "the emulator imports the gateway or its GitHub adapter:\n" + "\n".join(found)
