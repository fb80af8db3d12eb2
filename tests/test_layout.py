"""The package's rooms import one way: ops -> losses -> layers -> models ->
tasks -> training / export, with utils and _compat below everything and no
cycles, function-level imports included."""

import ast
import os

import pytest

from locations import REPO_ROOT

PACKAGE = os.path.join(REPO_ROOT, "minilm_tf")

# Rank of each room: a module may import rooms of a lower rank, and its own.
RANKS = {
    "_compat": 0, "utils": 0,
    "ops": 1,
    "losses": 2,
    "layers": 3,
    "optimizers": 4, "data": 4,
    "models": 5,
    "tasks": 6,
    "training": 7, "export": 7,
    "benchmarks": 8,
}
SIBLINGS_APART = {("training", "export"), ("export", "training")}


def _modules():
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
                yield rel.removesuffix(".__init__"), path


def _imports(path):
    """Every `minilm_tf.X...` module name imported anywhere in the file."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "minilm_tf":
                for alias in node.names:
                    yield f"minilm_tf.{alias.name}"
            elif node.module.startswith("minilm_tf."):
                yield node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("minilm_tf."):
                    yield alias.name


def _room(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


MODULES = dict(_modules())


def test_every_module_is_in_a_room():
    rooms = {_room(m) for m in MODULES} - {None}
    assert rooms <= set(RANKS), f"modules outside the known rooms: {sorted(rooms - set(RANKS))}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _room(m)))
def test_imports_run_one_way(module):
    room = _room(module)
    wrong = []
    for imported in _imports(MODULES[module]):
        other = _room(imported)
        if other is None or other == room or other == "__version__":
            continue
        if other in RANKS and (RANKS[other] > RANKS[room] or (room, other) in SIBLINGS_APART):
            wrong.append(imported)
    assert not wrong, f"{module} ({room}) imports {wrong}, which lie above it"


def test_no_import_cycles():
    graph = {m: {i for i in _imports(p) if i in MODULES} for m, p in MODULES.items()}
    # Importing `minilm_tf.a.b` runs `minilm_tf.a` first: packages count as imported.
    for m in graph:
        graph[m] |= {".".join(i.split(".")[:k]) for i in set(graph[m])
                     for k in range(2, i.count(".") + 1)} & set(MODULES)
        graph[m].discard(m)
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(graph[node]):
            # A package's __init__ importing its own modules is not a cycle.
            if not nxt.startswith(node + "."):
                visit(nxt)
        stack.pop()

    for module in sorted(graph):
        visit(module)
    assert not cycles, f"import cycles: {cycles[:3]}"


def test_the_readme_map_names_every_room():
    readme = open(os.path.join(os.path.dirname(PACKAGE), "README.md"), encoding="utf-8").read()
    block = readme.split("## Package map", 1)[1].split("```")[1]
    mapped = {line.split()[0].rstrip("/") for line in block.splitlines()
              if line.startswith("  ") and not line.startswith("   ")}
    rooms = {name for name in os.listdir(PACKAGE)
             if os.path.isdir(os.path.join(PACKAGE, name)) and not name.startswith("__")}
    assert rooms <= mapped, f"rooms missing from the README map: {sorted(rooms - mapped)}"
    assert mapped - {"_compat.py"} <= rooms, f"mapped but absent: {sorted(mapped - rooms)}"


def test_the_tests_mirror_the_package():
    """Each test sits in the folder of the room it tests; only the
    package-level modules (`_compat`, this layout) are tested at the top."""
    tests = os.path.join(os.path.dirname(PACKAGE), "tests")
    support = {"fixtures", "helpers"}
    folders = {name for name in os.listdir(tests)
               if os.path.isdir(os.path.join(tests, name)) and not name.startswith((".", "__"))}
    rooms = {name for name in os.listdir(PACKAGE)
             if os.path.isdir(os.path.join(PACKAGE, name)) and not name.startswith("__")}
    assert folders - support <= rooms | {"tools"}, f"test folders that are no room: {sorted(folders - support - rooms)}"
    top = sorted(name for name in os.listdir(tests) if name.startswith("test_") and name.endswith(".py"))
    assert top == ["test_compat.py", "test_layout.py"], f"tests outside a room folder: {top}"
    names = [name for _, _, files in os.walk(tests) for name in files
             if name.startswith("test_") and name.endswith(".py")]
    assert len(names) == len(set(names)), "two test files share a name (pytest imports them by name)"
