"""The repository explains itself: every design reference in code, tests and scripts names a file that is here."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEARCHED = ("dms", "tests", "bench", "maint-scripts", "debian", "docs", "README.md")
DOC_REF = re.compile(r"\bdocs/[\w./-]+?\.md\b")
MD_LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")


def candidate_files() -> list[Path]:
    """Tracked and untracked-but-not-ignored files under SEARCHED (build outputs and vendored files left out)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "--", *SEARCHED],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout  # fmt: skip
        return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file there
        roots = [ROOT / name for name in SEARCHED]
        found = [r for r in roots if r.is_file()] + [p for r in roots if r.is_dir() for p in sorted(r.rglob("*"))]
        return [p for p in found if p.is_file() and "__pycache__" not in p.parts]


def text_files() -> dict[Path, str]:
    """The text of every candidate file (binary files left out)."""
    texts: dict[Path, str] = {}
    for p in candidate_files():
        try:
            texts[p] = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def test_no_reference_to_a_design_file_outside_the_repository() -> None:
    stale = [
        f"{p.relative_to(ROOT)}:{n}"
        for p, text in text_files().items()
        if p != Path(__file__).resolve()
        for n, line in enumerate(text.splitlines(), 1)
        if "DESIGN.md" in line
    ]
    assert stale == [], f"DESIGN.md is not in the repository; point these to docs/*.md: {stale}"


def test_every_docs_reference_names_an_existing_file() -> None:
    refs = {(str(p.relative_to(ROOT)), ref) for p, text in text_files().items() for ref in DOC_REF.findall(text)}
    assert refs, "the code cites its design documents somewhere"
    missing = sorted((where, ref) for where, ref in refs if not (ROOT / ref).is_file())
    assert missing == [], f"references to files that do not exist: {missing}"


def test_links_between_markdown_pages_resolve() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "dms").rglob("README.md"))]
    broken = [
        (str(page.relative_to(ROOT)), link)
        for page in pages
        for link in MD_LINK.findall(page.read_text(encoding="utf-8"))
        if not link.startswith(("http://", "https://")) and not (page.parent / link).is_file()
    ]
    assert broken == []
