"""The package's rooms (README: Layout): every module imports only its own room and the rooms below it,
so there are no import cycles between rooms; every room loads from ``import etn`` alone."""

import ast
import subprocess
import sys
from pathlib import Path

import etn

RUNTIME = Path(etn.__file__).parent
GENERATOR = Path(etn.generator.__file__).parent
#: rooms from the bottom up; a module may import from its own layer and the ones below
LAYERS = [{"generator", "catalogue"}, {"io"}, {"backends"}, {"potential", "cost"}, {"fitting"}, {"hosts"},
          {"workflows"}, {"cli", "__main__"}]
LAYER = {room: k for k, rooms in enumerate(LAYERS) for room in rooms}


def _room(module: str) -> str:
    """The room of a module 'etn.a.b': 'a' (a package or a top-level module)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, module: str):
    """The etn modules one file imports (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")
            base = base[:len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            if node.module:
                yield target
            else:  # from .. import x, y: each a module or a name of the package
                for alias in node.names:
                    yield f"{target}.{alias.name}"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("etn"):
            yield node.module


def _modules():
    for root, prefix in ((RUNTIME, "etn"), (GENERATOR, "etn.generator")):
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield path, ".".join([prefix, *parts])


def test_no_module_imports_a_higher_room():
    bad = []
    for path, module in _modules():
        here = _room(module)
        if here == "__init__":  # the curated namespace may reach everything (lazily)
            continue
        for target in _imports(path, module):
            there = _room(target)
            if there in ("__init__", "__version__") or there not in LAYER:
                continue
            if LAYER[there] > LAYER[here]:
                bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(bad)


def test_every_room_is_reachable_after_import_etn():
    code = ("import etn\n"
            "for room, modules in etn.ROOMS.items():\n"
            "    for m in modules:\n"
            "        assert getattr(getattr(etn, room), m).__name__ == f'etn.{room}.{m}'\n"
            "assert etn.Fitter is etn.fitting.fit.Fitter and etn.Calculator is etn.hosts.calculator.Calculator\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "ok", r.stderr
    rooms = {p.name for p in RUNTIME.iterdir() if (p / "__init__.py").is_file()}
    assert rooms == set(etn.ROOMS) | {"catalogue", "data"}


def test_one_resolver_and_one_thread_setting():
    """Backend names resolve in one place for evaluation and design rows; etn.set_threads reaches every
    library already loaded and those loaded later, and refuses nonsense."""
    import pytest

    from etn.backends import resolver

    class Library:
        def __init__(self):
            self.calls = []

        def set_num_threads(self, n):
            self.calls.append(n)
            return n

    sched = etn.schedule(etn.catalogue.load("tiny"))
    before = resolver.threads()
    try:
        early = resolver._threaded(Library())
        etn.set_threads(1)
        late = resolver._threaded(Library())
        assert early.calls == [1] and late.calls == [1] and resolver.threads() == 1
        from threadpoolctl import threadpool_info

        assert all(p["num_threads"] == 1 for p in threadpool_info())  # BLAS too
        assert type(resolver.evaluation(sched, "numpy")).__name__ == "NumpyBackend"
        assert type(resolver.design(sched, "numpy")).__name__ == "DesignReference"
        assert type(resolver.design(sched, "c-float32")).__name__ == "CDesign"  # design rows are float64 C
        with pytest.raises(ValueError, match="unknown backend 'fpga'"):
            resolver.evaluation(sched, "fpga")
        with pytest.raises(ValueError, match="threads must be an integer >= 1"):
            etn.set_threads(0)
    finally:
        etn.set_threads(before)
    import os

    if before is None:  # back to all cores, BLAS included (a slow suite after this test was the symptom)
        from threadpoolctl import threadpool_info

        assert all(p["num_threads"] == (os.cpu_count() or 1) for p in threadpool_info() if p["user_api"] == "blas")
