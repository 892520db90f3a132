"""The runtime apart from the lab: no runtime module imports the benches, the evaluation and
training, the simulator and fleet what-if, the demo, the drills or the peers (lazily or not);
only the ``wrp`` dispatcher names the lab's command wings."""

from __future__ import annotations

import ast
from pathlib import Path

PIPELINE = Path(__file__).resolve().parents[2] / "pipeline"
LAB = ("bench", "evaluation", "pool.sim", "demo", "drills", "peers")
DISPATCHER = "cli"


def module_name(path: Path) -> str:
    parts = path.relative_to(PIPELINE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def in_lab(name: str) -> bool:
    return any(name == lab or name.startswith(f"{lab}.") for lab in LAB)


def imported(tree: ast.AST) -> set[str]:
    """Every pipeline module an import names, relative to the package (``pool.sim.fleet``),
    including ``from pipeline.pool import sim``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {n.removeprefix("pipeline.") for n in names if n.startswith("pipeline.")}


def test_no_runtime_module_imports_the_lab():
    upward = {
        f"{name} -> {target}"
        for path in PIPELINE.rglob("*.py")
        if not in_lab(name := module_name(path)) and name != DISPATCHER
        for target in imported(ast.parse(path.read_text()))
        if in_lab(target)
    }
    assert not upward, sorted(upward)
