"""The standalone verifier imports only hashlib, json, coincurve, PyNaCl/cryptography.

Checked on the source (AST) of ``proofs/verifier.py`` and, transitively, of every
``proofs`` module it imports, and at run time in a fresh interpreter: after
``import proofs.verifier`` no numpy and no other repository package is loaded.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PROOFS = Path(__file__).resolve().parents[2] / "proofs"
ALLOWED_THIRD_PARTY = {"hashlib", "json", "coincurve", "nacl", "cryptography"}
# Language-level standard modules with no I/O, crypto or platform behaviour.
ALLOWED_LANGUAGE = {"__future__", "typing", "dataclasses", "enum", "collections", "re", "itertools"}


def _imports(module: str) -> set[str]:
    tree = ast.parse((PROOFS / f"{module}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import in proofs/{module}.py"
            assert node.module is not None
            if node.module == "proofs":
                names.update(f"proofs.{alias.name}" for alias in node.names)
            else:
                names.add(node.module)
    return names


def test_verifier_closure_imports_only_allowed_modules() -> None:
    seen: set[str] = set()
    todo = ["verifier"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for name in _imports(module):
            top = name.split(".")[0]
            if top == "proofs":
                todo.append(name.split(".")[1])
            else:
                assert top in ALLOWED_THIRD_PARTY | ALLOWED_LANGUAGE, (
                    f"proofs/{module}.py imports {name}"
                )
    assert seen >= {"verifier", "inclusion", "snapshot", "control", "encoding", "errors"}
    assert "tree" not in seen and "build" not in seen
    assert (PROOFS / "__init__.py").read_text().strip() == ""


def test_importing_verifier_loads_no_numpy_or_repo_packages() -> None:
    code = (
        "import sys, proofs.verifier, proofs.cli\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('numpy', 'custody', 'signer_nodes', 'policy', 'hsm', 'bench')]\n"
        "bad += [m for m in sys.modules if m in ('proofs.tree', 'proofs.build')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROOFS.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == ""
