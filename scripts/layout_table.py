"""Print README's Layout table from the package itself: one row per module, its docstring's first line.

    python scripts/layout_table.py            # print the table
    python scripts/layout_table.py --write    # replace the table between README's layout markers

tests/test_layout.py checks that README.md holds exactly what this prints, so the table cannot drift.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- layout:begin (scripts/layout_table.py) -->", "<!-- layout:end -->"


def summary(path: Path) -> str:
    """The first line of a module's docstring, one sentence, pipes escaped."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    line = doc.strip().split("\n\n")[0].replace("\n", " ")
    line = line.split(". ")[0].rstrip(".")
    return line.replace("|", "\\|")


def rows() -> list[str]:
    """One row per top-level module (its job) and per package (its modules and its job), in layer order
    as far as names go: library first, then the user's entry-point folders."""
    lib = ROOT / "lsld_engine"
    out = ["| where | modules | job |", "|---|---|---|"]
    for p in sorted(lib.glob("*.py")):
        if p.name != "__init__.py":
            out.append(f"| `lsld_engine/{p.name}` | | {summary(p)} |")
    folders = [d for d in sorted(lib.iterdir()) if (d / "__init__.py").exists()]
    folders += [ROOT / name for name in ("train", "export", "bench")]
    for d in folders:
        mods = ", ".join(p.stem for p in sorted(d.glob("*.py")) if p.name not in ("__init__.py", "__main__.py"))
        where = d.relative_to(ROOT).as_posix()
        out.append(f"| `{where}/` | {mods} | {summary(d / '__init__.py')} |")
    return out


def table() -> str:
    return "\n".join([BEGIN, *rows(), END])


def readme_table(text: str) -> str:
    """The marked table in README's text ('' if the markers are missing)."""
    if BEGIN not in text or END not in text:
        return ""
    start = text.index(BEGIN)
    return text[start:text.index(END, start) + len(END)]


def main(argv: list[str]) -> int:
    if "--write" in argv:
        readme = ROOT / "README.md"
        text = readme.read_text()
        old = readme_table(text)
        if not old:
            print(f"README.md has no {BEGIN} ... {END} markers", file=sys.stderr)
            return 2
        readme.write_text(text.replace(old, table()))
        return 0
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
