"""Gradescope's autograder for one exercise notebook, built on the same pipeline as ``grade``.

    python -m seqcourse autograder gradescope solutions/NN_name.ipynb -o autograder.zip [--no-sandbox]
        [--cell-timeout S] [--time-limit S] [--memory-mb MB]

writes the archive Gradescope's "Configure Autograder" page takes. At the root of the archive:

- ``setup.sh``: run once, as root, when Gradescope builds its image (Ubuntu): installs Python 3.11
  and bubblewrap with ``apt-get``, makes a virtual environment in ``/autograder/source/.venv`` and
  installs the pinned environment (``requirements.txt``: the notebooks' pins from
  ``binder/requirements.txt``, PyTorch's CPU build, and the package's other dependencies at the
  versions this archive was built with);
- ``run_autograder``: run for each submission: grades ``/autograder/submission/*.ipynb`` (the one
  named like the solution notebook when there are several) with ``python -m seqcourse.autograde.gradescope
  run``, and writes ``/autograder/results/results.json``;
- ``seqcourse/`` (the package), ``solution.ipynb`` and ``autograder.json`` (the limits, and whether
  to sandbox).

``results.json`` follows Gradescope's autograder specification: a ``score``, the
``execution_time``, an ``output`` for the whole submission (its flags, and what to do about a
grading error), and one test per question with ``score``, ``max_score``, ``status``, a readable
``output`` (each case's verdict, why the question scored 0, its flags) and the flags as ``tags``.
The folder is ``$AUTOGRADER_ROOT`` when set (the tests simulate ``/autograder`` in a temporary
folder), else ``/autograder``.

A submission is graded exactly as ``python -m seqcourse grade`` grades it: the solution notebook
first (it must earn full marks), then the submission in a bubblewrap sandbox. Where the sandbox
cannot work (Gradescope's container may not allow user namespaces), the run refuses, and every
test says so, unless the archive was built with ``--no-sandbox``.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import stat
import sys
import time
import zipfile
from importlib import metadata
from pathlib import Path

import seqcourse

from .assemble import PlanError, load_plan
from .batch import GradingError, QuestionGrade, SubmissionGrade, grade
from .sandbox import Limits, SandboxUnavailable

ROOT_ENV = "AUTOGRADER_ROOT"
DEFAULT_ROOT = "/autograder"
EXTRA_PINS = ("psutil", "PyYAML")  # the package's dependencies that binder/requirements.txt leaves out

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq python3.11 python3.11-venv bubblewrap
python3.11 -m venv /autograder/source/.venv
/autograder/source/.venv/bin/pip install --no-cache-dir -r /autograder/source/requirements.txt
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for every submission; it writes $ROOT/results/results.json.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
cd "$ROOT/source"
exec "$ROOT/source/.venv/bin/python" -m seqcourse.autograde.gradescope run --root "$ROOT"
"""


# ---- building the archive -------------------------------------------------------------------


def requirements(course: Path) -> str:
    """The pinned environment: ``binder/requirements.txt`` (the notebooks' pins, CPU PyTorch)
    without JupyterLab, and the package's remaining dependencies at their installed versions."""
    source = course / "binder" / "requirements.txt"
    if not source.is_file():
        raise FileNotFoundError(f"{source}: the course's pinned notebook environment is missing")
    lines = [line for line in source.read_text().splitlines() if line.strip() and not line.startswith("#")]
    lines = [line for line in lines if not line.lower().startswith("jupyterlab")]
    lines += [f"{name}=={metadata.version(name)}" for name in EXTRA_PINS]
    return "# The environment grading runs in (written by python -m seqcourse autograder gradescope).\n" + "\n".join(lines) + "\n"


def build(solution: Path, out: Path, limits: Limits, sandbox: bool = True) -> list[str]:
    """Write Gradescope's autograder archive for ``solution`` to ``out``; return its file names.
    The solution notebook is checked first (:func:`~seqcourse.autograde.assemble.load_plan`)."""

    load_plan(solution)  # a notebook that cannot drive grading is refused here, not on Gradescope
    package = Path(seqcourse.__file__).resolve().parent
    config = {"solution": "solution.ipynb", "notebook": Path(solution).name, "sandbox": sandbox, "cell_timeout": limits.cell_timeout,
              "time_limit": limits.time_limit, "memory_mb": limits.memory_mb}
    files = {
        "setup.sh": (SETUP, 0o755),
        "run_autograder": (RUN, 0o755),
        "requirements.txt": (requirements(package.parent), 0o644),
        "autograder.json": (json.dumps(config, indent=1) + "\n", 0o644),
        "solution.ipynb": (Path(solution).read_text(encoding="utf-8"), 0o644),
    }
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" not in path.parts:
            files[path.relative_to(package.parent).as_posix()] = (path.read_text(encoding="utf-8"), 0o644)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, (text, mode) in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text)
    Path(out).write_bytes(buffer.getvalue())
    return list(files)


# ---- running on Gradescope ------------------------------------------------------------------


def _case_lines(question: QuestionGrade) -> list[str]:
    if question.result is None:
        return []
    if not question.result.attempted:
        return ["not attempted (the function still raises NotImplementedError)"]
    lines = [f"case {c.index} {'passed' if c.passed else 'FAILED'}: {c.name}" + ("" if c.passed else f": {c.message}")
             for c in question.result.cases]
    if question.variants is not None:
        failed = [c for c in question.variants.cases if not c.passed]
        lines.append(f"fresh draws of the cases: {len(question.variants.cases) - len(failed)}/{len(question.variants.cases)} passed")
    return lines


def _test(number: int, question: QuestionGrade, title: str) -> dict:
    lines = _case_lines(question)
    if question.reason:
        lines.append(f"scored 0: {question.reason}")
    if question.flags:
        lines.append("flags: " + " ".join(question.flags))
    return {
        "name": f"{question.id}: {title}",
        "number": str(number),
        "score": question.earned,
        "max_score": question.points,
        "status": "passed" if question.earned == question.points else "failed",
        "output": "\n".join(lines),
        "tags": question.flags,
        "visibility": "visible",
    }


def results(row: SubmissionGrade, titles: dict[str, str], seconds: float, note: str = "") -> dict:
    """Gradescope's ``results.json`` for one graded submission."""
    question_flags = {flag for q in row.questions.values() for flag in q.flags}
    general = [flag for flag in row.flags if flag not in question_flags]
    lines = [note] if note else []
    lines.append(f"{row.total:g}/{row.max_total} points from automatically graded questions")
    if general:
        lines.append("flags for the whole notebook: " + " ".join(general))
    if row.error:
        lines.append(row.error)
    return {
        "score": row.total,
        "execution_time": round(seconds),
        "output": "\n".join(lines),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {"flags": row.flags, "runtime_audit": row.runtime, "audit": [f.to_dict() for f in row.findings]},
        "tests": [_test(n, q, titles[qid]) for n, (qid, q) in enumerate(row.questions.items(), start=1)],
    }


def failure(message: str, seconds: float) -> dict:
    """``results.json`` when grading could not run at all (score 0, the reason for everyone to see)."""
    return {"score": 0, "execution_time": round(seconds), "output": f"grading failed: {message}",
            "visibility": "visible", "stdout_visibility": "visible", "tests": []}


def _pick(folder: Path, solution_name: str) -> tuple[Path | None, str]:
    notebooks = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts) if folder.is_dir() else []
    if not notebooks:
        return None, ""
    named = [p for p in notebooks if p.name == solution_name]
    chosen = (named or notebooks)[0]
    note = f"several notebooks were submitted; graded {chosen.relative_to(folder)}" if len(notebooks) > 1 else ""
    return chosen, note


def run(root: Path) -> int:
    """Grade the submission under ``root`` (Gradescope's ``/autograder`` layout) and write
    ``root/results/results.json``. Returns 0, or 1 when grading could not run (the JSON says why)."""
    start = time.monotonic()
    source, out = root / "source", root / "results" / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    config = json.loads((source / "autograder.json").read_text())
    solution = source / config["solution"]
    limits = Limits(cell_timeout=config["cell_timeout"], time_limit=config["time_limit"], memory_mb=config["memory_mb"],
                    grace=min(5.0, config["cell_timeout"]))
    chosen, note = _pick(root / "submission", config["notebook"])
    if chosen is None:
        out.write_text(json.dumps(failure("no .ipynb notebook in the submission", time.monotonic() - start), indent=1))
        return 1
    try:
        report = grade(solution, [(chosen.name, chosen)], limits=limits, progress=False, sandbox=config["sandbox"])
    except (GradingError, SandboxUnavailable, ValueError) as error:
        out.write_text(json.dumps(failure(str(error), time.monotonic() - start), indent=1))
        print(f"error: {error}", file=sys.stderr)
        return 1
    titles = {q.id: q.title for q in report.questions}
    out.write_text(json.dumps(results(report.submissions[0], titles, time.monotonic() - start, note), indent=1, allow_nan=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seqcourse autograder",
                                     description="Autograders for course platforms (Gradescope).")
    sub = parser.add_subparsers(dest="command", required=True)
    build_parser = sub.add_parser("gradescope", help="build Gradescope's autograder archive for one notebook")
    build_parser.add_argument("solution", type=Path, help="the instructor's notebook (solutions/NN_name.ipynb)")
    build_parser.add_argument("-o", "--out", type=Path, default=Path("autograder.zip"), help="archive to write")
    build_parser.add_argument("--cell-timeout", type=float, default=60.0, help="seconds per cell (default 60)")
    build_parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per submission (default 600)")
    build_parser.add_argument("--memory-mb", type=int, default=2048, help="address-space cap in MB (default 2048)")
    build_parser.add_argument("--no-sandbox", action="store_true",
                              help="grade without bubblewrap on Gradescope (every result is flagged unsandboxed)")
    run_parser = sub.add_parser("run", help="(inside Gradescope) grade the submission, write results/results.json")
    run_parser.add_argument("--root", type=Path, default=None, help=f"default ${ROOT_ENV}, else {DEFAULT_ROOT}")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.root or Path(os.environ.get(ROOT_ENV, DEFAULT_ROOT)))

    try:
        limits = Limits(cell_timeout=args.cell_timeout, time_limit=args.time_limit, memory_mb=args.memory_mb,
                        grace=min(5.0, args.cell_timeout))
        names = build(args.solution, args.out, limits, sandbox=not args.no_sandbox)
    except (PlanError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(names)} files): upload it on Gradescope's Configure Autograder page")
    return 0


if __name__ == "__main__":
    sys.exit(main())
