"""Issue 9's before/after figures for a source tree: how much the dashboard asks of the browser and how much
of the tree repeats itself or reaches into other modules' private parts.

    python -m bench.tree_metrics [TREE] [--pylint PATH] [--json] [--verbose]

TREE is a checkout (default: this repository), e.g. one made with ``git worktree add /tmp/before HASH``.
It reads files as text and parses Python with ``ast``; nothing in TREE is imported or run, so it works on
older layouts (``backend/`` + ``app/`` before the rename) as on the current one. Figures:

- ``js_lines``: lines of browser JavaScript (``*.js`` under the dashboard's folders), all and non-blank;
- ``dcc_stores``: ``dcc.Store(...)`` components in the dashboard's Python;
- ``allow_duplicate``: ``Output(..., allow_duplicate=True)`` in callback declarations, and
  ``shared_outputs``: outputs (component id, property) that more than one callback declares;
- ``pylint_duplicates``: pylint's duplicate-code messages (R0801, blocks of 6 or more similar lines) over
  the Python source folders; pylint is not a dependency of headscope: pass ``--pylint`` (a throwaway venv's
  ``bin/pylint``) or have it on PATH, else the figure is left out;
- ``duplicates``: pairs of places sharing 6 or more same or same-shape lines, where the workplace's
  ``duplicates`` command is on PATH (it is not part of headscope);
- ``private_imports``: modules that import another module's private names (``from m import _x``, or
  ``m._x`` on an imported module), split into the project's own modules and third-party ones; beside it,
  modules that use a private attribute of another object (``engine._key``: ``x._name`` where x is not
  ``self``, ``cls`` or an imported module), which a reader checks by hand (a class's own ``other._x`` counts).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

SOURCE_DIRS = ("backend", "headscope", "app", "bench", "tests")  # Python folders, whichever layout
DASHBOARD_DIRS = ("app", "static", "headscope/app", "headscope/static")
PROJECT_PACKAGES = {"backend", "headscope", "app", "bench", "tests"}  # import roots that are this project
CALLBACK_DECLARATIONS = {"callback", "clientside_callback"}


def python_files(tree: Path, folders: tuple[str, ...]) -> list[Path]:
    return sorted(p for folder in folders if (tree / folder).is_dir() for p in (tree / folder).rglob("*.py")
                  if ".venv" not in p.parts)


def parsed(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError):
        return None


def js_lines(tree: Path) -> dict[str, int]:
    files = sorted({p for folder in DASHBOARD_DIRS if (tree / folder).is_dir() for p in (tree / folder).rglob("*.js")})
    lines = [line for p in files for line in p.read_text(encoding="utf-8").splitlines()]
    return {"files": len(files), "lines": len(lines), "non_blank": sum(1 for line in lines if line.strip())}


def _called(node: ast.AST, name: str) -> bool:
    """A call of `name` or of `anything.name`."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == name) or (isinstance(func, ast.Attribute) and func.attr == name)


def dashboard_figures(tree: Path) -> dict[str, object]:
    """dcc.Store count, allow_duplicate outputs, and outputs declared by more than one callback (an Output
    bound to a module-level name and used by several callbacks counts once per callback), per file too."""
    stores: dict[str, int] = defaultdict(int)
    duplicates: dict[str, int] = defaultdict(int)
    writers: dict[str, int] = defaultdict(int)
    for path in python_files(tree, ("app", "headscope/app")):
        module = parsed(path)
        if module is None:
            continue
        where = str(path.relative_to(tree))
        named = {target.id: node.value for node in module.body if isinstance(node, ast.Assign)
                 and _called(node.value, "Output") for target in node.targets if isinstance(target, ast.Name)}
        for node in ast.walk(module):
            if _called(node, "Store"):
                stores[where] += 1
            if not any(_called(node, name) for name in CALLBACK_DECLARATIONS):
                continue
            declared = [n for arg in [*node.args, *[k.value for k in node.keywords]] for n in ast.walk(arg)]
            outputs = [n for n in declared if _called(n, "Output")]
            outputs += [named[n.id] for n in declared if isinstance(n, ast.Name) and n.id in named]
            for output in outputs:
                duplicates[where] += any(k.arg == "allow_duplicate" and isinstance(k.value, ast.Constant)
                                         and k.value.value for k in output.keywords)
                if len(output.args) >= 2:
                    writers[f"{ast.unparse(output.args[0])}.{ast.unparse(output.args[1])}"] += 1
    shared = {name: count for name, count in writers.items() if count > 1}
    return {"dcc_stores": sum(stores.values()), "dcc_stores_by_file": dict(sorted(stores.items())),
            "allow_duplicate": sum(duplicates.values()),
            "allow_duplicate_by_file": {k: v for k, v in sorted(duplicates.items()) if v},
            "shared_outputs": len(shared), "shared_output_names": dict(sorted(shared.items()))}


def _root(module: str | None) -> str:
    return (module or "").split(".")[0]


def private_imports(tree: Path) -> dict[str, object]:
    """Modules that import a private name of another module (the project's own, or a third party's)."""
    found: dict[str, set[str]] = defaultdict(set)
    reached: dict[str, set[str]] = defaultdict(set)  # x._name on an object that is not self/cls/a module
    for path in python_files(tree, SOURCE_DIRS):
        module = parsed(path)
        if module is None:
            continue
        where = str(path.relative_to(tree))
        aliases: dict[str, str] = {}  # local name -> imported module
        for node in ast.walk(module):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found[where].add(f"{node.module}.{alias.name}")
                    else:
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else \
                        alias.name.split(".")[0]
        for node in ast.walk(module):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                found[where].add(f"{aliases[node.value.id]}.{node.attr}")
            elif (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                  and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls", *aliases))):
                reached[where].add(f"{ast.unparse(node.value)}.{node.attr}")
    project = {m: sorted(x for x in n if _root(x) in PROJECT_PACKAGES) for m, n in found.items()}
    third = {m: sorted(x for x in n if _root(x) not in PROJECT_PACKAGES) for m, n in found.items()}
    project, third = ({m: n for m, n in names.items() if n} for names in (project, third))
    others = {m: sorted(n) for m, n in reached.items()}
    return {"modules": len(found), "project_modules": len(project), "third_party_modules": len(third),
            "project": dict(sorted(project.items())), "third_party": dict(sorted(third.items())),
            "private_attribute_modules": len(others), "private_attributes": dict(sorted(others.items()))}


def pylint_duplicates(tree: Path, pylint: str | None) -> dict[str, object] | None:
    """pylint's duplicate-code messages (min 6 similar lines) over the Python source folders, or None."""
    command = pylint or shutil.which("pylint")
    folders = [folder for folder in SOURCE_DIRS if (tree / folder).is_dir()]
    if command is None or not folders:
        return None
    done = subprocess.run([command, "--disable=all", "--enable=duplicate-code", "--min-similarity-lines=6",
                           "--score=n", *folders], cwd=tree, capture_output=True, text=True, check=False)
    blocks = re.findall(r"R0801: Similar lines in \d+ files\n((?:==.*\n)+)", done.stdout)
    return {"messages": len(blocks), "folders": folders,
            "places": [" ~ ".join(line[2:] for line in block.splitlines()) for block in blocks]}


def library_duplicates(tree: Path) -> dict[str, object] | None:
    """Pairs of places sharing 6 or more same or same-shape lines, by the workplace's `duplicates` command
    (not part of headscope; None where it is not on PATH)."""
    command = shutil.which("duplicates")
    if command is None:
        return None
    done = subprocess.run([command, "--repo", str(tree), "--most", "200", "--seconds", "120"], capture_output=True,
                          text=True, check=False)
    first = re.match(r"(\d+) pairs of places", done.stdout)
    rows = [line for line in done.stdout.splitlines() if re.match(r"D\d+ ", line)]
    return {"pairs": int(first[1]) if first else 0, "rows": rows}


def measure(tree: Path, pylint: str | None) -> dict[str, object]:
    return {"tree": str(tree), "js": js_lines(tree), **dashboard_figures(tree),
            "pylint_duplicates": pylint_duplicates(tree, pylint), "duplicates": library_duplicates(tree),
            "private_imports": private_imports(tree)}


def summary(figures: dict) -> list[tuple[str, str]]:
    duplicates = figures["pylint_duplicates"]  # pylint's
    private = figures["private_imports"]
    return [
        ("lines of browser JavaScript (non-blank)", f"{figures['js']['lines']} ({figures['js']['non_blank']})"),
        ("dcc.Store components", str(figures["dcc_stores"])),
        ("callback outputs with allow_duplicate=True", str(figures["allow_duplicate"])),
        ("outputs written by more than one callback", str(figures["shared_outputs"])),
        ("pylint duplicate-code blocks (>= 6 lines)", "n/a (no pylint)" if duplicates is None
         else str(duplicates["messages"])),
        ("pairs of places sharing >= 6 lines (`duplicates` command)", "n/a (no command)"
         if figures["duplicates"] is None else str(figures["duplicates"]["pairs"])),
        ("modules importing another module's private names (project / third-party)",
         f"{private['modules']} ({private['project_modules']} / {private['third_party_modules']})"),
        ("modules using private attributes of other objects (x._name, x not self/cls)",
         str(private["private_attribute_modules"])),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tree", nargs="?", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--pylint", default=None, help="pylint executable (default: pylint on PATH)")
    parser.add_argument("--json", action="store_true", help="every figure and its places as JSON")
    parser.add_argument("--verbose", action="store_true", help="also list the places behind each figure")
    args = parser.parse_args(argv)
    figures = measure(args.tree.resolve(), args.pylint)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"tree: {figures['tree']}")
    for name, value in summary(figures):
        print(f"{name:<78} {value}")
    if args.verbose:
        print("\ndcc.Store by file:", json.dumps(figures["dcc_stores_by_file"], indent=1))
        print("allow_duplicate by file:", json.dumps(figures["allow_duplicate_by_file"], indent=1))
        print("shared outputs:", json.dumps(figures["shared_output_names"], indent=1))
        print("private imports:", json.dumps(figures["private_imports"], indent=1))
        if figures["pylint_duplicates"]:
            print("pylint duplicates:", json.dumps(figures["pylint_duplicates"]["places"], indent=1))
        if figures["duplicates"]:
            print("duplicates:", json.dumps(figures["duplicates"]["rows"], indent=1))


if __name__ == "__main__":
    main()
