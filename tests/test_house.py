"""The house's shape, measured from the code's own imports: levels, cycles, sizes, lazy imports.

``python tests/test_house.py`` prints the measures; the tests hold the ones the house keeps:
the import graph has no cycle and at most :data:`MAX_LEVELS` levels, no function is over 60
lines, no dashboard module over 250, ``pages/`` holds only the eight pages, ``lmcore`` never
imports Streamlit, and every import of the project's own modules inside a function says why.
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lmcore", "dashboard", "pages")
MAX_LEVELS = 10
MAX_FUNCTION_LINES = 60
MAX_DASHBOARD_LINES = 250
MAX_LAZY_IMPORTS = 10
PAGES = {
    "home.py",
    "tour.py",
    "data.py",
    "mathematics.py",
    "train.py",
    "generate.py",
    "finetune.py",
    "runs.py",
}


def source_files() -> list[Path]:
    files = [ROOT / "app.py"] + [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    return [p for p in files if p.is_file()]


def _module_file(dotted: str) -> Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _imports(path: Path):
    """(node, target file, inside a function) for each import of the project's own modules."""
    parents = {}
    for node in ast.walk(_tree(path)):
        for child in ast.iter_child_nodes(node):
            parents[child] = node

    def in_function(node) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return True
        return False

    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                target = _module_file(f"{node.module}.{alias.name}") or _module_file(node.module)
                if target:
                    yield node, target, in_function(node)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES and _module_file(alias.name):
                    yield node, _module_file(alias.name), in_function(node)


def graph() -> dict[Path, set[Path]]:
    files = source_files()
    return {p: {t for _, t, _ in _imports(p) if t != p} for p in files}


def cycles(g: dict[Path, set[Path]]) -> list[list[Path]]:
    """The strongly connected components with more than one file (Tarjan's algorithm)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in g:
        if v not in index:
            visit(v)
    return found


def levels(g: dict[Path, set[Path]]) -> dict[Path, int]:
    """Each file's level: 1 if it imports none of the project's files, else one above the
    highest file it imports (the graph must have no cycle)."""
    memo: dict[Path, int] = {}

    def level(p: Path) -> int:
        if p not in memo:
            memo[p] = 1 + max((level(q) for q in g.get(p, ())), default=0)
        return memo[p]

    return {p: level(p) for p in g}


def longest_chain(g, lv) -> list[Path]:
    top = max(lv, key=lv.get)
    chain = [top]
    while g.get(chain[-1]):
        chain.append(max(g[chain[-1]], key=lv.get))
    return chain


def long_functions() -> list[tuple[str, int]]:
    rows = []
    for p in source_files():
        for f in ast.walk(_tree(p)):
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef):
                n = f.end_lineno - f.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    rows.append((f"{p.relative_to(ROOT)}:{f.lineno} {f.name}", n))
    return rows


def lazy_imports() -> list[tuple[str, str]]:
    """(where, the comment on its line) for each import of the project's modules in a function."""
    rows = []
    for p in source_files():
        lines = p.read_text(encoding="utf-8").splitlines()
        seen = set()
        for node, _, inside in _imports(p):
            if inside and node.lineno not in seen:
                seen.add(node.lineno)
                comment = lines[node.lineno - 1].partition("#")[2].strip()
                rows.append((f"{p.relative_to(ROOT)}:{node.lineno}", comment))
    return rows


def line_counts(folder: str) -> dict[str, int]:
    return {
        str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines())
        for p in sorted((ROOT / folder).rglob("*.py"))
    }


# ---------------------------------------------------------------------------- the house's rules


def test_the_import_graph_has_no_cycle_and_few_levels():
    g = graph()
    assert not cycles(g), [[str(p.relative_to(ROOT)) for p in c] for c in cycles(g)]
    lv = levels(g)
    chain = " -> ".join(str(p.relative_to(ROOT)) for p in longest_chain(g, lv))
    assert max(lv.values()) <= MAX_LEVELS, chain


def test_no_function_is_over_sixty_lines():
    assert long_functions() == []


def test_the_dashboard_modules_are_small_and_pages_holds_only_the_pages():
    assert {p.name for p in (ROOT / "pages").iterdir() if p.name != "__pycache__"} == PAGES
    big = {k: v for k, v in line_counts("dashboard").items() if v > MAX_DASHBOARD_LINES}
    assert big == {}


def test_lazy_imports_are_few_and_each_says_why():
    rows = lazy_imports()
    assert len(rows) <= MAX_LAZY_IMPORTS, rows
    assert [where for where, why in rows if not why] == []


def test_lmcore_never_imports_streamlit_and_pages_never_import_tensorflow():
    for p in source_files():
        names = {
            (n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
            for n in ast.walk(_tree(p))
            if isinstance(n, ast.Import | ast.ImportFrom) and (isinstance(n, ast.Import) or n.module)
            for a in (n.names if isinstance(n, ast.Import) else [n])
        }
        where = p.relative_to(ROOT).parts[0]
        if where == "lmcore":
            assert "streamlit" not in names, p
        else:
            assert not names & {"tensorflow", "keras"}, p


def test_a_module_shares_no_name_with_a_function_it_defines():
    clashes = []
    for p in source_files():
        top = {
            n.name
            for n in _tree(p).body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        }
        if p.stem in top:
            clashes.append(str(p.relative_to(ROOT)))
    assert clashes == []


def main() -> None:
    g = graph()
    lv = levels(g) if not cycles(g) else {}
    print(f"files: {len(g)}, imports: {sum(map(len, g.values()))}, cycles: {len(cycles(g))}")
    if lv:
        print(f"levels: {max(lv.values())}")
        print("longest chain: " + " -> ".join(str(p.relative_to(ROOT)) for p in longest_chain(g, lv)))
    sizes = {**line_counts("lmcore"), **line_counts("dashboard"), **line_counts("pages")}
    for folder in ("lmcore", "dashboard", "pages"):
        mine = {k: v for k, v in sizes.items() if k.startswith(folder + "/")}
        if mine:
            big = max(mine, key=mine.get)
            print(f"largest in {folder}/: {big} ({mine[big]} lines); files: {len(mine)}")
    print(f"functions over {MAX_FUNCTION_LINES} lines: {long_functions() or 0}")
    rows = lazy_imports()
    print(f"imports of the project's modules inside functions: {len(rows)}")
    for where, why in rows:
        print(f"  {where}  # {why}")


if __name__ == "__main__":
    sys.exit(main())
