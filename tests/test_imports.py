"""The package's layers: every import points down, and no module reaches back to itself.

    studio -> cli -> run -> dream | video -> image -> caffe -> config -> values | errors

dream and video sit side by side and import neither the other; the package's face
(dreamer/__init__.py) and `python -m dreamer` (__main__.py) stand above every layer.
Imports inside functions (taken lazily, to keep start-up quick) count as much as any.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dreamer"
LAYERS = {"studio": 8, "cli": 7, "run": 6, "dream": 5, "video": 5, "image": 4, "caffe": 3, "config": 2,
          "values": 1, "errors": 0}
ABOVE_ALL = ("__init__", "__main__")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The dreamer modules `path` imports, wherever in the file (`from a import b` counts
    as a.b when b is a module, else as a)."""
    here = module_name(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this file is in
                parts = here.split(".")
                package = parts[:len(parts) - node.level + (path.name == "__init__.py")]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _is_module(candidate) else base)
    return {name for name in found if name == "dreamer" or name.startswith("dreamer.")}


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def layer(module: str) -> str | None:
    """The layer a module belongs to: its folder, or its own name at the top level."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def upward(edges: dict[str, set[str]]) -> list[str]:
    """Imports that point up a layer, or sideways into another folder of the same one."""
    bad = []
    for module, targets in edges.items():
        here = layer(module)
        if here in ABOVE_ALL or here is None:
            continue
        for target in targets:
            there = layer(target)
            if there is None or there == here:
                continue
            if there in ABOVE_ALL or LAYERS[there] >= LAYERS[here]:
                bad.append(f"{module} -> {target}")
    return sorted(bad)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle among the modules (each found once, from its least name)."""
    found = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for target in sorted(edges.get(node, ())):
            if target == start:
                found.append(path)
            elif target > start and target not in path and target in edges:
                walk(start, target, path + [target])

    for start in sorted(edges):
        walk(start, start, [start])
    return found


def test_every_module_is_in_a_layer():
    edges = graph()
    assert len(edges) > 40
    unknown = {layer(m) for m in edges} - set(LAYERS) - set(ABOVE_ALL) - {None}
    assert not unknown, f"modules outside the layers: {unknown}; add them to LAYERS"


def test_every_import_points_down():
    assert upward(graph()) == []


def test_no_import_circle():
    # (the face's imports are lazy, made only when a name of it is first used)
    edges = {m: t - {"dreamer"} for m, t in graph().items() if m != "dreamer"}
    assert circles(edges) == []


def test_the_library_api_imports_nothing_of_the_command_line():
    edges = graph()
    reached, todo = set(), ["dreamer.run.api", "dreamer.run.pipeline"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(edges.get(module, ()))
    assert not {m for m in reached if m.startswith("dreamer.cli")}


@pytest.mark.parametrize("edges,bad", [
    ({"dreamer.config": {"dreamer.dream.keyframes"}, "dreamer.dream.keyframes": set()},
     ["dreamer.config -> dreamer.dream.keyframes"]),
    ({"dreamer.dream.flicker": {"dreamer.video.frames"}, "dreamer.video.frames": set()},
     ["dreamer.dream.flicker -> dreamer.video.frames"]),
    ({"dreamer.run.pipeline": {"dreamer.cli.dream"}, "dreamer.cli.dream": set()},
     ["dreamer.run.pipeline -> dreamer.cli.dream"]),
    ({"dreamer.cli.dream": {"dreamer.run.sequence"}, "dreamer.run.sequence": set()}, []),
])
def test_the_walk_finds_what_points_up(edges, bad):
    assert upward(edges) == bad


def test_the_walk_finds_a_circle():
    edges = {"dreamer.run.a": {"dreamer.run.b"}, "dreamer.run.b": {"dreamer.run.c"},
             "dreamer.run.c": {"dreamer.run.a"}, "dreamer.run.d": {"dreamer.run.a"}}
    assert circles(edges) == [["dreamer.run.a", "dreamer.run.b", "dreamer.run.c"]]
