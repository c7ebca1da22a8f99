"""The package layering holds: no import cycles, no upward imports.

Layers, lowest first: ``common`` (layers, backbones, config, detection geometry,
training runtime, checkpoints, export) < ``dataset`` (converters, input
pipelines) < the model families (``efficientdet``, ``efficientnet_v2``, which
never import each other) < the applications (``model_zoo``, ``main``,
``model_inspect``, ``benchmarks``). Every import statement counts, also the
ones inside functions.
"""
import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
LAYERS = {"common": 0, "dataset": 1, "efficientdet": 2, "efficientnet_v2": 2,
          "model_zoo": 3, "main": 3, "model_inspect": 3, "benchmarks": 3}
FAMILIES = ("efficientdet", "efficientnet_v2")


def _module_name(path):
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules():
    files = [REPO / f"{name}.py" for name in ("model_zoo", "main", "model_inspect")]
    for package in ("common", "dataset", "efficientdet", "efficientnet_v2", "benchmarks"):
        files += sorted((REPO / package).rglob("*.py"))
    return {_module_name(path): path for path in files}


def _imports(path, known):
    """Project modules imported by ``path`` (the most specific known module of each name)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def _graph():
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _top(name):
    return name.split(".")[0]


def test_no_upward_imports():
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in _graph().items() for target in targets
        if LAYERS[_top(target)] > LAYERS[_top(module)]
        or (_top(module) in FAMILIES and _top(target) in FAMILIES
            and _top(module) != _top(target)))
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    graph = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


def test_graph_sees_lazy_imports():
    """The walk must see imports inside functions, or the checks above prove nothing."""
    graph = _graph()
    assert "efficientdet.experiment" in graph["efficientdet.config"]
    assert "common.families" in graph["common.config.experiment"]
