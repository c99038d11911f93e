"""The probe package's layers (issue 15): imports point down only and no module imports itself back in a circle.
Every import counts, the lazy ones inside functions too (a circle through a lazy import is still a circle)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# layer -> the layers it may import (itself included); `render` is below all of them
ALLOWED = {
    "io": {"io"},
    "stats": {"stats", "io"},
    "design": {"design", "io"},
    "klein": {"klein", "io"},
    "report": {"report", "stats", "design", "io"},
    "jobs": {"jobs", "report", "klein", "design", "stats", "io"},
}
DEPRECATED = {"probe.model", "probe.capture", "probe.captures", "probe._moved"}   # thin re-exports of the old paths


def _modules(package: str) -> dict[str, Path]:
    out = {}
    for p in sorted((ROOT / package).rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(path: Path, name: str) -> set[str]:
    """Every module `name` imports (absolute and relative, top-level and inside functions)."""
    found = set()
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}     # `from probe.report import images`
    return found


def _graph(packages=("probe", "evaluate", "render")):
    mods = {}
    for pkg in packages:
        mods.update(_modules(pkg))
    return mods, {m: {i for i in _imports(p, m) if i in mods and i != m} for m, p in mods.items()}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in ALLOWED else None


def test_probe_imports_point_down_only():
    mods, graph = _graph()
    wrong = []
    for m, targets in graph.items():
        if not m.startswith("probe.") or m in DEPRECATED:
            continue
        for t in targets:
            if t.startswith("evaluate"):
                wrong.append(f"{m} -> {t} (probe is below evaluate)")
            elif t.startswith("probe.") and t not in DEPRECATED:
                src, dst = _layer(m), _layer(t)
                if src is not None and dst is not None and dst not in ALLOWED[src]:
                    wrong.append(f"{m} ({src}) -> {t} ({dst})")
                elif src is not None and dst is None and t not in ("probe",):
                    wrong.append(f"{m} ({src}) -> {t} (outside the layers)")
            elif t in DEPRECATED:
                wrong.append(f"{m} -> {t} (a deprecated re-export)")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(sorted(wrong))
    for m, targets in graph.items():      # render is the data layer: it imports neither probe nor evaluate
        if m.startswith("render"):
            assert not {t for t in targets if t.startswith(("probe", "evaluate"))}, m


def test_no_import_circles():
    mods, graph = _graph()
    graph = {m: {t for t in ts if t not in ("probe", "evaluate", "render") and not mods[t].name == "__init__.py"}
             for m, ts in graph.items() if m not in DEPRECATED}
    state: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                circles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_every_layer_says_what_it_holds_and_may_import():
    for layer in ALLOWED:
        doc = ast.get_docstring(ast.parse((ROOT / "probe" / layer / "__init__.py").read_text())) or ""
        assert doc and "import" in doc.split("\n\n")[0], f"probe/{layer}/__init__.py must say what it may import"


def test_old_import_paths_still_work_with_a_deprecation_note():
    import importlib
    import warnings

    import pytest

    for old, name, new in (("probe.model", "load_pipeline", "probe.klein.model"),
                           ("probe.capture", "HeadCapture", "probe.klein.capture"),
                           ("probe.captures", "load_captures", "probe.io.captures")):
        import sys

        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=new):
            mod = importlib.import_module(old)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert getattr(mod, name) is getattr(importlib.import_module(new), name)
    import probe.stats
    from probe.stats.analysis import analyse

    assert probe.stats.analyse is analyse


def test_every_internal_import_names_an_existing_module():
    """A moved module leaves no import behind that points at its old place (lazy and relative imports too)."""
    mods, _ = _graph()
    missing = []
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names = [base]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            missing += [f"{m}: {n}" for n in names if n.split(".")[0] in ("probe", "evaluate", "render") and n not in mods]
    assert not missing, "imports of modules that do not exist:\n" + "\n".join(missing)
