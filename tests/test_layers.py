"""Imports only point down: benchmarks/ in layers (written once, LAYERS below), no import cycle in benchmarks/ or
evaluators/, and the packages one-way (m4v and evaluators never import benchmarks; m4v never imports evaluators;
evaluators takes from m4v only the evaluation backbones and the synthetic world). Every import statement counts,
at module level and inside functions, read with ast (nothing is imported). docs/architecture.md explains the layers.
"""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# benchmarks/ from the bottom up: a module may import its own layer or a lower one, never a higher one. A module
# belongs to the layer of the longest entry naming it or a package above it (the root package, "benchmarks", names
# only its own __init__); a new module must be placed here.
LAYERS = [
    ("core", ["benchmarks", "benchmarks.core"]),           # errors, bounds, atomic outputs, provenance, hashing
    ("stats", ["benchmarks.stats"]),                      # intervals, paired tests, detectable differences, power
    ("compute", ["benchmarks.compute"]),                  # timing, FLOP counting, a shipped model's measured run
    ("generators", ["benchmarks.generators"]),            # every model of a run behind one protocol
    ("run", ["benchmarks.run"]),                          # suites, the runner, the cache, sharding, external videos
    ("reporting", ["benchmarks.reporting"]),              # summary, report.md / .html, precision, reading runs back
    ("commands", ["benchmarks.cli", "benchmarks.run_suite", "benchmarks.compare", "benchmarks.train",
                  "benchmarks.paper", "benchmarks.perf", "benchmarks.diagnostics"]),
]
# What evaluators/ may take from m4v/: the backbones it scores with and the world it checks against, never a
# generator (transformer, sampling, VAE, text encoders...): a metric must not depend on the model it judges.
EVALUATORS_MAY_IMPORT = ("m4v.checkpoint", "m4v.tiny_clip", "m4v.fidelity", "m4v.world",
                         "m4v.file_hash")   # the one file SHA-256 (standard library)


def modules(package: str) -> dict[str, Path]:
    """{dotted name: file} of every module of a package (a package's __init__ under the package's name)."""
    found = {}
    for path in sorted((REPO / package).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


KNOWN = {**modules("benchmarks"), **modules("evaluators"), **modules("m4v")}


def imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import statement of the file, relative ones resolved; `from P import X`
    is module P.X when that is a module, else P; a name outside the three packages is kept as written."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in KNOWN else base for a in node.names]
        else:
            continue
        for target in targets:
            while "." in target and target not in KNOWN:   # `import a.b.c` of a name inside module a.b
                target = target.rpartition(".")[0]
            found.append((target, node.lineno))
    return found


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(REPO)}:{line}"


def layer_of(name: str) -> int | None:
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            below = "." in prefix and name.startswith(prefix + ".")
            if (name == prefix or below) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), rank)
    return None if best is None else best[1]


def test_every_benchmarks_module_has_a_layer():
    unplaced = [f"{m} ({where(p, 1)})" for m, p in modules("benchmarks").items() if layer_of(m) is None]
    assert not unplaced, ("modules in no layer of tests/test_layers.py LAYERS (place each in the layer it "
                          "belongs to): " + ", ".join(unplaced))


def test_benchmarks_imports_only_point_down():
    upward = []
    for name, path in modules("benchmarks").items():
        mine = layer_of(name)
        for target, line in imports(name, path):
            theirs = layer_of(target) if target.split(".")[0] == "benchmarks" else None
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{where(path, line)}: {name} ({LAYERS[mine][0]}) imports {target} "
                              f"({LAYERS[theirs][0]})")
    assert not upward, "imports pointing up a layer:\n" + "\n".join(upward)


def cycles(package_names: list[str]) -> list[str]:
    """Each import cycle among the packages' modules (strongly connected components, Tarjan), as a chain of
    imports with the file and line of each."""
    graph: dict[str, dict[str, str]] = defaultdict(dict)   # module -> {imported module: file:line}
    names = {}
    for package in package_names:
        names.update(modules(package))
    for name, path in names.items():
        for target, line in imports(name, path):
            if target in names and target != name:
                graph[name].setdefault(target, where(path, line))
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(names):
        if v not in index:
            visit(v)
    described = []
    for component in components:   # one concrete loop through the component, edge by edge
        start = min(component)
        chain, seen, v = [start], {start}, start
        while True:
            v = min(w for w in graph[v] if w in component)
            chain.append(v)
            if v in seen:
                break
            seen.add(v)
        loop = chain[chain.index(chain[-1]):]
        described.append(f"{len(component)} modules in one circle ({', '.join(sorted(component))}), e.g. "
                         + " -> ".join(f"{a} ({graph[a][b]})" for a, b in zip(loop, loop[1:])) + f" -> {loop[-1]}")
    return described


@pytest.mark.parametrize("packages", [["benchmarks"], ["evaluators"]])
def test_no_import_cycle(packages):
    found = cycles(packages)
    assert not found, "import cycles:\n" + "\n".join(found)


def test_packages_import_one_way():
    wrong = []
    for package, forbidden in (("m4v", ("benchmarks", "evaluators")), ("evaluators", ("benchmarks",))):
        for name, path in modules(package).items():
            wrong += [f"{where(path, line)}: {name} imports {target}" for target, line in imports(name, path)
                      if target.split(".")[0] in forbidden]
    for name, path in modules("evaluators").items():
        wrong += [f"{where(path, line)}: {name} imports {target} (evaluators may take from m4v only "
                  f"{', '.join(EVALUATORS_MAY_IMPORT)})" for target, line in imports(name, path)
                  if target.split(".")[0] == "m4v"
                  and not any(target == ok or target.startswith(ok + ".") for ok in EVALUATORS_MAY_IMPORT)]
    assert not wrong, "imports against the one-way rule:\n" + "\n".join(wrong)


def test_the_checks_can_fail(tmp_path, monkeypatch):
    # The checker on a made-up package: an upward import, a cycle and an unplaced module are each reported with
    # the file and line, so the tests above pass because the code is layered, not because nothing is read.
    package = tmp_path / "benchmarks"
    (package / "core").mkdir(parents=True)
    (package / "run").mkdir()
    (package / "__init__.py").write_text("")
    (package / "core" / "__init__.py").write_text("")
    (package / "run" / "__init__.py").write_text("")
    (package / "core" / "low.py").write_text("def f():\n    from benchmarks.run import high\n")
    (package / "run" / "high.py").write_text("from benchmarks.core import low\n")
    (package / "stray.py").write_text("from .core import low\n")
    monkeypatch.setitem(globals(), "REPO", tmp_path)
    monkeypatch.setitem(globals(), "KNOWN", modules("benchmarks"))
    assert imports("benchmarks.stray", package / "stray.py") == [("benchmarks.core.low", 1)]
    with pytest.raises(AssertionError, match=r"benchmarks/core/low.py:2: benchmarks.core.low \(core\) imports "
                                             r"benchmarks.run.high \(run\)"):
        test_benchmarks_imports_only_point_down()
    assert cycles(["benchmarks"]) == ["2 modules in one circle (benchmarks.core.low, benchmarks.run.high), e.g. "
                                      "benchmarks.core.low (benchmarks/core/low.py:2) -> benchmarks.run.high "
                                      "(benchmarks/run/high.py:1) -> benchmarks.core.low"]
    with pytest.raises(AssertionError, match=r"benchmarks.stray \(benchmarks/stray.py:1\)"):
        test_every_benchmarks_module_has_a_layer()
