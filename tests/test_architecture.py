"""docs/architecture.md's import rules: no import loops, lower layers never import higher ones.

Imports inside functions count (they still make a loop); ``if TYPE_CHECKING:`` ones do not.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "fer_video"


def _graph() -> dict[str, set[str]]:
    """module -> the fer_video modules it imports; a sub-package (``executors/``) is one
    module, named after its folder."""
    graph: dict[str, set[str]] = {}
    for f in sorted(PKG.rglob("*.py")):
        parts = f.relative_to(PKG).with_suffix("").parts     # ("executors", "pool") or ("job",)
        name = parts[0]
        tree = ast.parse(f.read_text(encoding="utf-8"))
        type_only = {id(n) for node in ast.walk(tree)
                     if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                     for n in ast.walk(node)}
        deps = set()
        for node in ast.walk(tree):
            if id(node) in type_only or not isinstance(node, ast.ImportFrom) or node.level == 0:
                continue
            anchor = parts[:-1][:len(parts) - node.level]    # the package the import starts from
            if anchor:                                       # inside a sub-package: that module
                deps.add(anchor[0])
                continue
            deps.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        graph[name] = graph.get(name, set()) | (deps - {name})
    return graph


def test_no_import_loops():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        state[n] = 1
        for d in sorted(graph.get(n, ())):
            assert state.get(d) != 1, "import loop: " + " -> ".join(path + [d])
            if d in graph and d not in state:
                visit(d, path + [d])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])


def test_lower_layers_never_import_higher_ones():
    graph = _graph()
    assert "executors" in graph and "ray_executor" not in graph
    above_pipeline = {"job", "batch", "report_folder", "executors", "cli", "api"}
    for stage in ("records", "errors", "threads", "atomic", "onnxrt", "decode", "probe", "input_file",
                  "detect", "mtcnn", "mtcnn_onnx", "keyframes", "track", "aggregate", "classify",
                  "classify_onnx"):
        assert not graph[stage] & (above_pipeline | {"pipeline"}), stage
    for name in ("pipeline", "detect_stage", "pipeline_parts"):
        assert not graph[name] & above_pipeline, name
    assert not graph["detect_stage"] & {"pipeline"} and not graph["pipeline_parts"] & {"pipeline"}
    for writer in ("report", "report_html", "charts"):        # layer 1 only
        assert not graph[writer] & (above_pipeline | {"pipeline"}), writer
    assert not graph["report_folder"] & {"pipeline", "job", "batch", "executors"}
    assert not graph["job"] & {"batch", "executors", "cli", "api"}
    assert not graph["executors"] & {"batch", "cli", "api", "pipeline"}
