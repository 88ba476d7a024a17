"""The layers of docs/architecture.md, checked on the imports: every arrow points down, and every module is
on the page."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "glidein_triton"
ARCHITECTURE = REPO / "docs" / "architecture.md"
#: What each layer may import from the package, besides itself (the CLI sits on top of everything).
ALLOWED = {
    "worker": {"glidein_triton.worker"},
    "job": {"glidein_triton.job", "glidein_triton.worker"},
    "operator": {"glidein_triton.operator", "glidein_triton.worker"},
    "local": {
        "glidein_triton.local",
        "glidein_triton.operator",
        "glidein_triton.job",
        "glidein_triton.worker",
    },
}
#: Third-party packages each layer may use: none on the worker side (it runs on a bare worker node); the
#: local glidein uses what the demo, the tests and the benchmarks need.
THIRD_PARTY = {
    "worker": set(),
    "job": {"tritonclient", "numpy", "classad2", "htcondor2"},
    "operator": {"lxml", "jinja2"},
    "local": {"tritonclient", "numpy", "classad2", "htcondor2", "psutil", "pytriton"},
}


def modules(layer: str) -> list[Path]:
    return sorted(path for path in (PACKAGE / layer).rglob("*.py") if "models" not in path.parts)


def imported(path: Path) -> set[str]:
    """Every module a file imports (absolute names; the package uses no relative imports)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module or "")
    return names


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below(layer: str) -> None:
    for path in modules(layer):
        for name in imported(path):
            top = name.split(".")[0]
            if top == "glidein_triton":
                if name == "glidein_triton":
                    continue  # the version
                assert any(name == allowed or name.startswith(f"{allowed}.") for allowed in ALLOWED[layer]), (
                    f"{path.relative_to(REPO)} imports {name}"
                )
            elif top not in sys.stdlib_module_names and top != "__future__":
                assert top in THIRD_PARTY[layer], f"{path.relative_to(REPO)} imports {name}"


def test_the_architecture_page_names_every_module() -> None:
    page = ARCHITECTURE.read_text()
    missing = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name not in ("__init__.py", "__main__.py")
        and "models" not in path.parts
        and "templates" not in path.parts
        and f"`{path.relative_to(PACKAGE).as_posix()}`" not in page
    ]
    assert missing == []
