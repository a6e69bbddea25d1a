"""The package's import structure: layers from the contract up to the daemon, no circles.

Read from the source with `ast` (module-level imports; imports under `TYPE_CHECKING` and
inside functions are deliberate late bindings and not counted), so the check is what a
newcomer would find by reading the imports, not what happened to be imported at runtime.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cassetted"

# Low to high: a module imports from its own layer and the ones below it.
LAYERS: list[tuple[str, ...]] = [
    ("contract", "redaction", "plugins", "tasks", "events"),  # what every part may know
    ("config",),                       # with CONFIG_LAYER below: the settings it assembles
    ("store",),                        # database, migrations, credentials
    ("audio", "music", "lyrics"),      # making a song's parts
    ("library",),                      # songs as the household sees them
    ("jobs",),                         # the queue, the workers, the pipeline
    ("cluster",),                      # the queue spread over machines (NATS JetStream)
    ("household",),                    # who asks, quotas, guests, learning
    ("playback",),                     # rooms and their zones
    ("mqtt",),                         # transport
    ("homeassistant", "features", "voice", "api"),  # what is built on all of the above
    ("_app", "__main__"),              # the daemon and the CLI
]

# Each plugin's settings model lives with its plugin, and `config` assembles them: these
# modules sit in the config layer whatever their package (they import only the layers below).
CONFIG_LAYER = {
    "cassetted.cluster.settings", "cassetted.homeassistant.settings",
    "cassetted.household.settings",
    "cassetted.library.media", "cassetted.lyrics.settings", "cassetted.music.acestep.settings",
    "cassetted.playback.plugin", "cassetted.playback.settings",
}

# The few imports that run upward, each with its reason.
UPWARD = {
    ("cassetted.music.acestep.settings", "cassetted.music.acestep.layout"):
        "the settings validate variant and LM names against the model layout's own tables",
    ("cassetted.music.acestep.settings", "cassetted.music.task"):
        "the settings cap variants at the engine's batch limit, defined once",
    ("cassetted.playback.zones.homeassistant", "cassetted.homeassistant.rest"):
        "the zone talks to Home Assistant with the same REST client as the bridge",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The cassetted modules `path` imports at module level."""

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(resolve(a.name) for a in node.names if a.name.startswith("cassetted."))
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module \
                    and node.module.startswith("cassetted."):
                for alias in node.names:  # `from cassetted.music import timing` is a module
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in modules else resolve(node.module))
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                visit(node.orelse)

    visit(ast.parse(path.read_text()).body)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _layer(module: str) -> int:
    if module == "cassetted":
        return 0
    if module in CONFIG_LAYER:
        return 1
    top = module.split(".")[1]
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"{module}: its package is in no layer of tests/test_layers.py")


def test_every_package_has_a_layer() -> None:
    for module in _graph():
        _layer(module)


def test_imports_run_downward() -> None:
    upward = sorted(
        f"{source} (layer {_layer(source)}) imports {target} (layer {_layer(target)})"
        for source, targets in _graph().items() for target in targets
        if _layer(target) > _layer(source) and (source, target) not in UPWARD)
    assert upward == []


def test_the_upward_exceptions_are_still_needed() -> None:
    graph = _graph()
    stale = [pair for pair in UPWARD if pair[1] not in graph.get(pair[0], set())]
    assert stale == []


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
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
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return circles


def test_the_circle_finder_finds_circles() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_between_modules() -> None:
    assert _circles(_graph()) == []


def test_no_import_circles_between_packages() -> None:
    """Counting the settings modules with `config`, as the layers do."""
    edges: defaultdict[str, set[str]] = defaultdict(set)

    def package(module: str) -> str:
        return "config" if module in CONFIG_LAYER else module.split(".")[1]

    for source, targets in _graph().items():
        for target in targets - {"cassetted"}:
            if source != "cassetted" and package(target) != package(source) \
                    and (source, target) not in UPWARD:
                edges[package(source)].add(package(target))
    assert _circles(dict(edges)) == []
