"""Draw the project's layer picture from the code: ``python scripts/architecture_graph.py [--out docs/architecture.svg]``.

Every ``import`` between project modules (read from the source with ``ast``; nothing is imported) is collapsed to
the subpackage it lands in, drawn once per pair of groups, and laid out with Graphviz ``dot`` top to bottom in
the layer order the import-linter contracts enforce. Edges implied by others are dropped (``tred``), so the
picture shows the direct dependencies a reader needs, not every path.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Top to bottom; the pillars share a layer.
LAYERS = (("app shell", ("app_shell",)), ("trainer", ("trainer",)),
          ("pillars", ("llava_demo", "react_explorer")), ("shared library", ("vision_common",)))  # fmt: skip
PACKAGES = tuple(pkg for _, pkgs in LAYERS for pkg in pkgs)
COLOURS = {"app_shell": "#f4cccc", "trainer": "#fce5cd", "llava_demo": "#cfe2f3", "react_explorer": "#d9ead3",
           "vision_common": "#eeeeee"}  # fmt: skip


def group_of(module: str, own_boxes: frozenset[str] = frozenset()) -> str:
    """``llava_demo.server.app`` -> ``llava_demo.server``; ``trainer.llava.eval.*`` -> ``trainer.llava.eval``;
    a top-level module joins its package's box unless it is in ``own_boxes`` (one that the package's own
    subpackages import, e.g. ``llava_demo.presets``: in the package box it would draw a false cycle)."""
    parts = module.split(".")
    if len(parts) >= 2 and ".".join(parts[:2]) in own_boxes:
        return ".".join(parts[:2])
    if len(parts) >= 2 and ROOT.joinpath(*parts[:2]).is_dir():
        if parts[:2] == ["trainer", "llava"] and len(parts) >= 3 and ROOT.joinpath(*parts[:3]).is_dir():
            return ".".join(parts[:3])
        return ".".join(parts[:2])
    return parts[0]


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports() -> dict[str, set[str]]:
    """Module -> the project modules (or packages) it imports, as written."""
    imports: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found = imports.setdefault(module_of(path), set())
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                found.update(name for name in names if name.split(".")[0] in PACKAGES)
    return imports


def group_edges() -> tuple[set[str], set[tuple[str, str]]]:
    imports = module_imports()
    own_boxes = frozenset(
        target
        for source, targets in imports.items()
        for target in targets
        if source.count(".") >= 2 and target.count(".") == 1 and source.split(".")[0] == target.split(".")[0]
        and ROOT.joinpath(*target.split(".")).with_suffix(".py").is_file()
    )  # fmt: skip
    groups = {group_of(module, own_boxes) for module in imports}
    edges = set()
    for source, targets in imports.items():
        for target in targets:
            a, b = group_of(source, own_boxes), group_of(target, own_boxes)
            if a != b:
                edges.add((a, b))
    return groups, edges


def layer_anchors(groups: set[str]) -> list[str]:
    """Invisible anchors between layers put every box of a layer below every box of the layer above it (added
    after ``tred``, which would otherwise drop real edges that the anchors imply)."""
    members = [sorted(g for g in groups if g.split(".")[0] in packages) for _, packages in LAYERS]
    lines = []
    for i in range(len(LAYERS) - 1):
        lines.append(f'  "below{i}" [style=invis, shape=point, width=0];')
        lines += [f'  "{g}" -> "below{i}" [style=invis];' for g in members[i]]
        lines += [f'  "below{i}" -> "{g}" [style=invis];' for g in members[i + 1]]
    return lines


def to_dot(groups: set[str], edges: set[tuple[str, str]]) -> str:
    lines = ["digraph layers {", '  rankdir=TB; newrank=true; node [shape=box, style="rounded,filled", '
             'fontname="Helvetica", fontsize=11]; edge [color="#888888", arrowsize=0.6];']  # fmt: skip
    for layer, packages in LAYERS:
        lines.append(f'  subgraph "cluster_{layer}" {{ label="{layer}"; fontname="Helvetica"; style=dashed;')
        for package in packages:
            for group in sorted(g for g in groups if g.split(".")[0] == package):
                lines.append(f'    "{group}" [fillcolor="{COLOURS[package]}"];')
        lines.append("  }")
    lines += [f'  "{a}" -> "{b}";' for a, b in sorted(edges)]
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "architecture.svg", help="SVG or PNG")
    parser.add_argument("--dot", action="store_true", help="print the DOT source instead of rendering it")
    args = parser.parse_args(argv)
    groups, edges = group_edges()
    source = to_dot(groups, edges)
    if args.dot:
        print(source, end="")
        return 0
    if not (shutil.which("dot") and shutil.which("tred")):
        print(
            "error: Graphviz is not installed (apt-get install graphviz); --dot prints the source",
            file=sys.stderr,
        )
        return 2
    reduced = subprocess.run(["tred"], input=source, capture_output=True, text=True, check=True).stdout
    reduced = reduced.rstrip().removesuffix("}") + "\n".join(layer_anchors(groups)) + "\n}\n"
    dot_file = args.out.with_suffix(
        ".dot"
    )  # the source, kept beside the picture: a test compares it to the code
    dot_file.write_text(source)
    fmt = args.out.suffix.lstrip(".") or "svg"
    rendered = subprocess.run(
        ["dot", f"-T{fmt}"], input=reduced.encode(), capture_output=True, check=True
    ).stdout
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_bytes(rendered)
    tmp.replace(args.out)
    print(f"wrote {args.out} ({len(rendered):,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
