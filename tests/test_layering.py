"""The layers of edge_agent, read from the sources' imports (ast), so the folders keep meaning what they say.

- the root's vocabulary (readings, errors, clock, backoff) imports nothing of edge_agent;
- protocols/ imports only the root and config/;
- control/ imports only the root and control/: no protocols/, service/, configuration models or buffers;
- only cli/ imports cli/, and nothing in edge_agent imports the simulator (edge_sim);
- no two packages import each other, however indirectly.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "edge_agent"
ENTRY_POINTS = {"__main__"}  # `python -m edge_agent` starts the command line: above every layer


def imports(package: Path) -> list[tuple[str, str, str]]:
    """(file relative to the package's parent, importing layer, imported module) for every import."""
    found = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        layer = parts[0] if len(parts) > 1 else "root"
        if layer == "root" and parts[0] in ENTRY_POINTS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            else:
                continue
            found += [(str(path.relative_to(package.parent)), layer, name) for name in names]
    return found


def target_layer(module: str) -> str | None:
    """'config' for edge_agent.config.agent, 'root' for edge_agent.readings; None outside edge_agent."""
    parts = module.split(".")
    if parts[0] != "edge_agent":
        return None
    if len(parts) == 1 or (PACKAGE / f"{parts[1]}.py").exists() or parts[1] == "__version__":
        return "root"
    return parts[1]


ALLOWED = {"root": set(), "protocols": {"root", "config", "protocols"}, "control": {"root", "control"}}


def violations(package: Path = PACKAGE) -> list[str]:
    broken, edges = [], set()
    for file, layer, module in imports(package):
        if module.split(".")[0] == "edge_sim":
            broken.append(f"{file}: imports {module}: edge_agent never imports the simulator")
        target = target_layer(module)
        if target is None:
            continue
        if layer in ALLOWED and target not in ALLOWED[layer]:
            broken.append(f"{file}: imports {module}: {layer}/ may import only {sorted(ALLOWED[layer])}")
        if target == "cli" and layer != "cli":
            broken.append(f"{file}: imports {module}: only cli/ imports cli/")
        if target != layer:
            edges.add((layer, target))
    broken += [f"packages {a} and {b} import each other" for a, b in sorted(edges) if reaches(edges, b, a)]
    return broken


def reaches(edges: set[tuple[str, str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        layer = todo.pop()
        if layer == goal:
            return True
        seen.add(layer)
        todo += [b for a, b in edges if a == layer and b not in seen]
    return False


def test_the_layers_hold() -> None:
    assert violations() == []


@pytest.mark.parametrize(
    ("file", "line", "named"),
    [
        (
            "protocols/base.py",
            "from edge_agent.control import guards",
            "protocols/base.py: imports edge_agent.control",
        ),
        ("store/buffer.py", "import edge_sim.layout", "store/buffer.py: imports edge_sim.layout"),
        ("control/guards.py", "from edge_agent.config import AgentConfig", "control/guards.py: imports"),
        ("readings.py", "from edge_agent.clock import Clock", "readings.py: imports edge_agent.clock"),
        ("uplink/session.py", "from edge_agent.cli import common", "only cli/ imports cli/"),
    ],
)
def test_a_broken_layer_is_named_by_file_and_import(tmp_path: Path, file: str, line: str, named: str) -> None:
    copy = tmp_path / "edge_agent"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / file
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    assert any(named in problem for problem in violations(copy)), violations(copy)
