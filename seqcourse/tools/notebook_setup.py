"""The set-up cell that opens every course notebook, and the tool that puts it there.

On Google Colab (or any Jupyter where the course is not installed) a notebook opened from the
repository has PyTorch but not ``seqcourse``. The first code cell of every chapter, solution and
exercise notebook therefore installs it from the repository when ``import seqcourse`` fails, and
does nothing where it is installed (here, on Binder, in the test suite)::

    # Installs the course's package where it is missing (Google Colab); does nothing otherwise.
    try:
        import seqcourse
    except ModuleNotFoundError:
        %pip install --quiet "seqcourse @ git+https://github.com/OWNER/REPO"

The repository address comes from ``repository.url`` in ``_config.yml``, the one place it is
written, so that changing it there and running this tool again updates every notebook.

The cell has the id ``seqcourse-setup`` and the tags ``nbval-ignore-output`` (its output, if
any, is never compared) and ``remove-cell`` (the rendered book leaves it out; the launched
notebook keeps it). In an nbgrader notebook (one whose cells carry ``nbgrader`` metadata) it is
also a locked, ungraded nbgrader cell, so the exercise generator and nbgrader treat it like the
other set-up cells.

Command line, from the repository root::

    python -m seqcourse.tools.notebook_setup [--check] [--config _config.yml] PATH ...

PATH is a notebook or a folder of notebooks. The tool inserts the cell before the first code cell
(after the title and introduction), or rewrites it in place when its text is out of date; a
notebook that already has the current cell is left untouched, byte for byte. In a notebook stored
with outputs the code cells are renumbered 1, 2, ... in order, as a fresh *Run all* numbers them.
``--check`` writes nothing and exits 1 naming each notebook that would change.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

CELL_ID = "seqcourse-setup"
TAGS = ("nbval-ignore-output", "remove-cell")
NBGRADER_METADATA = {"grade": False, "grade_id": CELL_ID, "locked": True, "schema_version": 3, "solution": False}


def repository_url(config: str | Path = "_config.yml") -> str:
    """The repository address from a Jupyter Book ``_config.yml`` (``repository.url``).

    Raises ``FileNotFoundError`` when the file is missing and ``ValueError`` when it has no
    ``repository.url`` that is an https address."""
    import yaml  # a declared dependency (pyproject.toml), installed with Jupyter Book; only this tool needs it

    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"no Jupyter Book configuration at {path}; run from the repository root "
                                "or pass --config")
    data = yaml.safe_load(path.read_text()) or {}
    url = (data.get("repository") or {}).get("url")
    if not isinstance(url, str) or not url.startswith("https://"):
        raise ValueError(f"{path}: repository.url must be an https address, got {url!r}")
    return url.rstrip("/")


IGNORE_REASON = "installs the package on Colab: pip's output, if any, differs per machine"
"""Why nbval does not compare the set-up cell's output (every ignored cell states a reason)."""


def setup_cell_source(url: str) -> str:
    """The text of the set-up cell for the repository at ``url`` (an https address)."""
    if not isinstance(url, str) or not url.startswith("https://") or any(c in url for c in "\"' \n"):
        raise ValueError(f"url must be an https address without quotes or spaces, got {url!r}")
    return (
        "# Installs the course's package where it is missing (Google Colab); does nothing otherwise.\n"
        "try:\n"
        "    import seqcourse\n"
        "except ModuleNotFoundError:\n"
        f'    %pip install --quiet "seqcourse @ git+{url}"'
    )


def _is_nbgrader(nb) -> bool:
    return any("nbgrader" in cell.get("metadata", {}) for cell in nb.cells)


def _expected_cell(nb, url: str):
    cell = nbformat.v4.new_code_cell(setup_cell_source(url))
    cell.id = CELL_ID
    cell.metadata["tags"] = list(TAGS)
    cell.metadata["nbval_ignore_reason"] = IGNORE_REASON
    if _is_nbgrader(nb):
        cell.metadata["editable"] = False
        cell.metadata["deletable"] = False
        cell.metadata["nbgrader"] = dict(NBGRADER_METADATA)
    return cell


def first_code_cell(nb):
    """The first code cell of ``nb`` (a NotebookNode), or None."""
    return next((cell for cell in nb.cells if cell.cell_type == "code"), None)


def has_setup_cell(nb, url: str) -> bool:
    """Whether the first code cell of ``nb`` is the current set-up cell for ``url``."""
    cell = first_code_cell(nb)
    expected = _expected_cell(nb, url)
    return (cell is not None and cell.get("id") == CELL_ID and cell.source == expected.source
            and cell.metadata == expected.metadata and not cell.outputs)


def ensure_setup_cell(nb, url: str) -> bool:
    """Make the first code cell of ``nb`` the set-up cell for ``url``; return whether ``nb`` changed.

    An existing set-up cell (found by its id) is replaced where it stands if it is the first code
    cell, or moved there otherwise. When the notebook stores execution counts, the code cells
    (and their execute_result outputs) are renumbered 1, 2, ... in order."""
    if has_setup_cell(nb, url):
        return False
    executed = any(c.cell_type == "code" and c.get("execution_count") is not None for c in nb.cells)
    nb.cells = [cell for cell in nb.cells if cell.get("id") != CELL_ID]
    position = next((i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"), len(nb.cells))
    nb.cells.insert(position, _expected_cell(nb, url))
    if executed:
        count = 0
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            count += 1
            cell.execution_count = count
            for output in cell.outputs:
                if output.get("output_type") == "execute_result":
                    output["execution_count"] = count
    return True


def _notebooks(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found.extend(sorted(p for p in path.glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts))
        elif path.suffix == ".ipynb" and path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path} is neither a notebook (.ipynb) nor a folder")
    return found


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m seqcourse.tools.notebook_setup",
        description="Insert or update the set-up cell (installs seqcourse on Colab) at the top of notebooks.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="notebooks, or folders of notebooks")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a notebook would change")
    parser.add_argument("--config", default="_config.yml", help="Jupyter Book configuration holding repository.url")
    args = parser.parse_args(argv)
    try:
        url = repository_url(args.config)
        notebooks = _notebooks(args.paths)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stale = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        if not ensure_setup_cell(nb, url):
            continue
        stale.append(path)
        if not args.check:
            nbformat.write(nb, path)
    verb = "lack the current set-up cell" if args.check else "updated"
    print(f"{len(stale)} of {len(notebooks)} notebook(s) {verb}" + "".join(f"\n  {p}" for p in stale))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
