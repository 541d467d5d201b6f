"""Tests of the book's configuration and of the build itself.

The static tests read _config.yml, _toc.yml, the pages and references.bib (well under a second).
``test_book_builds_without_warnings`` runs ``jupyter-book build <repo> -W`` into a temporary folder,
from the outputs stored in the notebooks, as ``make book`` does (the session's shared build, about 15 s here).
"""
import json
import re
from pathlib import Path

import yaml
from pybtex.database import parse_file

from book_toc import toc_entries

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
# {cite}`a,b`, {cite:p}`a`, {cite:t}`a` and the other roles of sphinxcontrib-bibtex.
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")


def source_of(entry: str) -> Path:
    """The one .md or .ipynb file a toc entry names."""
    found = [ROOT / f"{entry}{suffix}" for suffix in (".md", ".ipynb") if (ROOT / f"{entry}{suffix}").is_file()]
    assert len(found) == 1, f"_toc.yml entry {entry!r} should match exactly one .md or .ipynb file, found {found}"
    return found[0]


def page_text(path: Path) -> str:
    """The Markdown of a page: the whole .md file, or a notebook's Markdown cells."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown")
    return path.read_text()


def test_toc_lists_the_whole_course_in_order():
    assert toc_entries() == [
        "book/intro", "book/running", "book/troubleshooting",
        "book/01_recurrence", "book/02_gradients", "book/03_gating", "book/04_convolutions",
        "book/05_attention", "book/05b_transformer_at_work", "book/06_state_space", "book/07_normalization",
        "book/08_comparison", "book/08b_recall",
        "book/exercises", "book/instructors", "book/glossary", "book/references",
        "book/api_data", "book/api_models", "book/api_measure", "book/api_tools",
    ]


def test_every_toc_entry_exists_and_every_page_is_in_the_toc():
    entries = toc_entries()
    assert len(entries) == len(set(entries)), "a page is listed twice in _toc.yml"
    for entry in entries:
        source_of(entry)
    pages = {f"book/{p.stem}" for p in BOOK.iterdir() if p.suffix in (".md", ".ipynb")}
    assert pages == set(entries), f"pages missing from _toc.yml: {sorted(pages - set(entries))}"


def test_config_builds_only_from_stored_outputs_and_excludes_the_rest():
    assert CONFIG["execute"]["execute_notebooks"] == "off"
    assert CONFIG["only_build_toc_files"] is True
    assert {".*", ".venv", "_build", "solutions", "exercises", "tests", "**.ipynb_checkpoints"} <= set(
        CONFIG["exclude_patterns"])
    assert CONFIG["bibtex_bibfiles"] == ["book/references.bib"]


def test_repository_address_is_written_once():
    """Binder, Colab and repository links are all built from repository.url."""
    url = CONFIG["repository"]["url"]
    assert url.startswith("https://github.com/")
    assert CONFIG["launch_buttons"]["binderhub_url"] and CONFIG["launch_buttons"]["colab_url"]
    assert CONFIG["html"]["use_repository_button"] is True
    assert (ROOT / "_config.yml").read_text().count(url.removeprefix("https://")) == 1
    for page in BOOK.glob("*.md"):
        text = page.read_text()
        for address in (url.removeprefix("https://"), "mybinder.org", "colab.research.google.com"):
            assert address not in text, f"{page.name} writes {address}; use the substitutions in _config.yml"


def test_bibliography_entries_are_complete_and_all_cited():
    bib = parse_file(BOOK / "references.bib")
    for key, entry in bib.entries.items():
        assert entry.persons.get("author"), f"{key} has no authors"
        assert entry.fields.get("title") and entry.fields.get("year"), f"{key} lacks a title or year"
        assert entry.fields.get("journal") or entry.fields.get("booktitle"), f"{key} names no venue"
    cited = set()
    for entry in toc_entries():
        for keys in CITE.findall(page_text(source_of(entry))):
            cited.update(key.strip() for key in keys.split(","))
    assert cited - set(bib.entries) == set(), "cited keys missing from references.bib"
    assert set(bib.entries) - cited == set(), "references.bib entries cited nowhere"


def test_references_page_prints_the_bibliography():
    assert "```{bibliography}" in (BOOK / "references.md").read_text()


def test_book_builds_without_warnings(built_book):
    """The session's build (tests/conftest.py: `make book`'s command into a temporary folder)."""
    assert built_book.returncode == 0, built_book.log[-5000:]
    warnings = [line for line in built_book.log.splitlines() if "WARNING" in line]
    assert warnings == [], "\n".join(warnings)

    html = built_book.html
    for entry in toc_entries():
        page = html / f"{entry}.html"
        assert page.is_file(), f"no HTML page for {entry}"
        text = page.read_text()
        if source_of(entry).suffix == ".md":
            assert "{{" not in text, f"{entry}: an unrendered substitution"
        else:  # launch buttons on every notebook page
            assert f"urlpath=lab/tree/{entry}.ipynb" in text, f"{entry}: no Binder button"
            assert f"/blob/{CONFIG['repository']['branch']}/{entry}.ipynb" in text, f"{entry}: no Colab button"
    intro = (html / f"{TOC['root']}.html").read_text()
    repo = CONFIG["repository"]["url"].removeprefix("https://github.com/")
    assert f"mybinder.org/v2/gh/{repo}/{CONFIG['repository']['branch']}?urlpath=lab" in intro
    assert f"colab.research.google.com/github/{repo}/blob/" in intro


# The root re-exports seqcourse.device; __main__ is the command line; seqcourse.grading's attribute
# `check` is the function, which shadows its module of that name for autodoc (the page says what the
# package holds, and documents each of its modules).
UNDOCUMENTED = ("seqcourse", "seqcourse.__main__", "seqcourse.grading")
"""Modules the reference pages leave out; also every seqcourse.experiments.chapterNN (tables of
claims, shown by the chapters) and seqcourse.grading.questions.* (the graders' reference answers)."""


def test_the_reference_pages_document_every_module_once():
    """Each module of the package appears in exactly one ``automodule`` of book/api_*.md (inside an
    ``{eval-rst}`` block: autodoc writes reStructuredText, which MyST would read as Markdown)."""
    documented = [m for page in sorted(BOOK.glob("api_*.md"))
                  for m in re.findall(r"^\.\. automodule:: (\S+)$", page.read_text(), re.M)]
    assert len(documented) == len(set(documented)), "a module is documented twice"
    modules = set()
    for path in (ROOT / "seqcourse").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        modules.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    wanted = {m for m in modules if m not in UNDOCUMENTED and not re.match(r"seqcourse\.(experiments\.chapter\d\d|"
                                                                            r"grading\.questions)", m)}
    assert set(documented) == wanted, (f"not documented: {sorted(wanted - set(documented))}; "
                                       f"not a module: {sorted(set(documented) - wanted)}")
