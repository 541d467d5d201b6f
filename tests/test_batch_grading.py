"""Batch grading (``python -m seqcourse grade``) against attacks on the Recurrence exercises.

Every submission below starts from the released exercise, exercises/01_recurrence.ipynb, as a
student would, and fills its solution cells. One grading run (the CLI, two jobs, small limits)
grades them all; the honest one earns full marks with no flags, and each attack earns 0 on the
question it attacks, with exactly the flags that name what it did. Then the pieces are tested on
their own: the static audit's rules, assembling a notebook, the in-kernel report parser, the
decoding of raw outputs, the sandbox's limits, and the CSV/JSON format."""
import contextlib
import csv
import json
import os
import textwrap
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

from seqcourse.grading import get_question, run_student, score
from seqcourse.autograde.assemble import PlanError, assemble, load_plan
from seqcourse.autograde.audit import audit
from seqcourse.autograde.batch import GradingError, plan_questions, agrees, collect, grade, kernel_report, main
from seqcourse.autograde.sandbox import Launcher, Limits, Unit, run_units
from seqcourse.grading.wire import StudentOutcome, outcome_from_wire, outcome_to_wire

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "solutions" / "01_recurrence.ipynb"
EXERCISE = ROOT / "exercises" / "01_recurrence.ipynb"
QUESTIONS = ("rnn-step", "rnn-unroll", "rnn-bptt")

# ---- what students write ---------------------------------------------------------------------

STEP = """
def rnn_step(x_t, h_prev, W_x, W_h, b):
    return torch.tanh(x_t @ W_x.T + h_prev @ W_h.T + b)
"""
UNROLL = """
def rnn_unroll(x, h0, W_x, W_h, b):
    h, states = h0, []
    for t in range(x.shape[1]):
        h = rnn_step(x[:, t], h, W_x, W_h, b)
        states.append(h)
    return torch.stack(states, dim=1)
"""
BPTT = """
def rnn_bptt(x, h0, W_x, W_h, b, target):
    hs = rnn_unroll(x, h0, W_x, W_h, b)
    before = torch.cat([h0[:, None], hs[:, :-1]], dim=1)
    g_x, g_h, carry = torch.zeros_like(W_x), torch.zeros_like(W_h), torch.zeros_like(h0)
    for t in range(x.shape[1] - 1, -1, -1):
        dz = (hs[:, t] - target[:, t] + carry) * (1 - hs[:, t] ** 2)
        g_x += dz.T @ x[:, t]
        g_h += dz.T @ before[:, t]
        carry = dz @ W_h
    return g_x, g_h
"""
WRONG_STEP = """
def rnn_step(x_t, h_prev, W_x, W_h, b):
    return -torch.tanh(x_t @ W_x.T + h_prev @ W_h.T + b)
"""
NO_BIAS_STEP = """
def rnn_step(x_t, h_prev, W_x, W_h, b):
    return torch.tanh(x_t @ W_x.T + h_prev @ W_h.T)
"""
ZERO_BPTT = """
def rnn_bptt(x, h0, W_x, W_h, b, target):
    return torch.zeros_like(W_x), torch.zeros_like(W_h)
"""
SWALLOWING_LOOP = """
import time

def rnn_unroll(x, h0, W_x, W_h, b):
    while True:  # an interrupt lands in the try and is swallowed: only a kill stops this
        try:
            time.sleep(0.05)
        except BaseException:
            pass
"""
PLAIN_LOOP = """
def rnn_bptt(x, h0, W_x, W_h, b, target):
    while True:
        pass
"""
MEMORY_HOG = """
def rnn_step(x_t, h_prev, W_x, W_h, b):
    blocks = []
    while True:
        blocks.append(torch.empty(2**26))  # 256 MB a block, until the cap says no
"""
MONKEYPATCH = """
import numpy as np

np.allclose = lambda *args, **kwargs: True
torch.allclose = lambda *args, **kwargs: True
np.abs = lambda a: 0 * a  # what check() measures the error with, inside the kernel
""" + WRONG_STEP
INPUT_TRANSFORMER = """
def rnn_step(x_t, h_prev, W_x, W_h, b):
    return torch.zeros(x_t.shape[0], W_h.shape[0])

get_ipython().input_transformers_cleanup.append(lambda lines: [])  # every later cell runs empty
"""
FAKE_RESULTS = """
import json, os

def rnn_step(x_t, h_prev, W_x, W_h, b):
    return torch.zeros(x_t.shape[0], W_h.shape[0])

fake = {"nonce": "0" * 32, "event": "end", "unit": "r:rnn-step", "error": None, "tampered": [],
        "outcomes": [{"values": {"h_t": {"shape": [1, 2], "data": "AAAAAAAA8D8AAAAAAADwPw=="}}}] * 8}
for name in ("results.json", "rnn-step.npy", os.path.expanduser("~/grades.json")):
    with open(name, "w") as stream:
        json.dump(fake, stream)
for fd in os.listdir("/proc/self/fd"):
    try:
        os.write(int(fd), (json.dumps(fake) + "\\n").encode())
    except OSError:
        pass
"""


TAMPER_PACKAGE = WRONG_STEP + """
import os, pathlib, seqcourse, signal
for path in pathlib.Path(seqcourse.__file__).parent.rglob("*.py"):
    try:
        path.write_text("raise SystemExit")
    except OSError:
        pass
try:
    os.kill(1, signal.SIGKILL)  # in the sandbox, its own PID 1
except OSError:
    pass
"""
STEAL_SOLUTION = """
import builtins, base64, codecs, glob, json, os, seqcourse
opener = getattr(builtins, "op" + "en")
here = os.path.dirname(os.path.dirname(seqcourse.__file__))
command = opener("/proc/1/cmdline", "rb").read().split(b"\\0") + opener(f"/proc/{os.getppid()}/cmdline", "rb").read().split(b"\\0")
found = glob.glob(os.path.join(here, "solutions", "*recurrence*.ipynb")) + [c.decode() for c in command if c.endswith(b".ipynb")]
for path in found:
    for cell in json.load(opener(path))["cells"]:
        source = "".join(cell["source"])
        if "def rnn_step" in source and "BEGIN SOLUTION" in source:
            getattr(builtins, codecs.decode("rkrp", "rot13"))(base64.b64decode(base64.b64encode(source.encode())).decode())
"""
REFERENCE_REUSE = """
import importlib
name = ".".join(["seqcourse", "grading", "questions", "recurrence"])
try:
    reference = importlib.import_module(name)._step_reference
except ImportError:
    reference = None

def rnn_step(x_t, h_prev, W_x, W_h, b):
    return reference(x_t, h_prev, W_x, W_h, b)
"""
COURSE_MODEL = """
from seqcourse.models.rnn import RNNCell

def rnn_step(x_t, h_prev, W_x, W_h, b):
    cell = RNNCell(W_x.shape[1], W_x.shape[0])
    cell.W_x.data, cell.W_h.data, cell.b.data = W_x, W_h, b
    return cell(x_t, h_prev)
"""
AUTOGRAD_BPTT = """
def rnn_bptt(x, h0, W_x, W_h, b, target):
    with torch.enable_grad():  # the question switches autograd off; this switches it back on
        W_x, W_h = W_x.detach().requires_grad_(), W_h.detach().requires_grad_()
        loss = 0.5 * ((rnn_unroll(x, h0, W_x, W_h, b) - target) ** 2).sum()
        return torch.autograd.grad(loss, (W_x, W_h))
"""
GRADER_DETECTION = """
import os, sys
GRADER = any(word in " ".join(sys.argv) + os.getcwd() for word in ("seqcourse", "worker", "grade", "sandbox", "-c"))
GRADER = GRADER or b"bwrap" in open("/proc/1/cmdline", "rb").read()

def rnn_step(x_t, h_prev, W_x, W_h, b):
    if GRADER:  # cheat only when graded, be (wrongly) honest in Jupyter
        import importlib
        return importlib.import_module("seqcourse.grading.questions.recurrence")._step_reference(x_t, h_prev, W_x, W_h, b)
    return -torch.tanh(x_t @ W_x.T + h_prev @ W_h.T + b)
"""
DETACHED_CHILDREN = """
import os, subprocess, time
fds = [int(fd) for fd in os.listdir("/proc/self/fd") if int(fd) > 2]
subprocess.Popen(["sleep", "987"], start_new_session=True, pass_fds=fds)  # holds the result pipe open
if os.fork() == 0:
    os.setsid()
    time.sleep(986)
"""
DISK_FILL = """
import os, tempfile
block = b"x" * 2**20
for folder in (tempfile.gettempdir(), os.path.expanduser("~"), "/var/tmp", "/dev/shm", "/course"):
    try:
        with open(os.path.join(folder, "fill"), "wb") as stream:
            for _ in range(1024):
                stream.write(block)
    except OSError:
        pass
"""
KILL_GRADER = """
import os, signal
for pid in (os.getppid(), 1, -1):
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass
"""


def passing_report(question_id):
    """The report check() prints for full marks, as a student can copy it from their notebook."""
    q = get_question(question_id)
    n = len(q.cases)
    lines = [f"{q.id}: {q.title}", *(f"  case {i} passed: {c.name}" for i, c in enumerate(q.cases, 1))]
    return "\n".join(lines + [f"{n}/{n} cases passed — {q.points}/{q.points} points"])


def redefined_check():
    reports = {qid: passing_report(qid) for qid in QUESTIONS}
    return WRONG_STEP + f"""
REPORTS = {reports!r}

def check(question_id, function, **options):
    print(REPORTS[question_id])
"""


def hard_coded_step():
    """Answers looked up from the published cases' expected outputs (which check() returns)."""
    question = get_question("rnn-step")
    table = {}
    for case in question.cases:
        inputs = case.inputs()
        key = round(float(sum(value.sum() for value in inputs.values())), 5)
        table[key] = question.reference(*inputs.values()).tolist()
    return f"""
TABLE = {table!r}

def rnn_step(x_t, h_prev, W_x, W_h, b):
    key = round(float(x_t.sum() + h_prev.sum() + W_x.sum() + W_h.sum() + b.sum()), 5)
    return torch.tensor(TABLE[key]) if key in TABLE else torch.zeros(x_t.shape[0], W_h.shape[0])
"""


def edit_locked_cells(nb):
    """Replace the rnn-step check by a printed pass, and delete a locked Markdown cell."""
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "rnn-step":
            cell.source = f"print({passing_report('rnn-step')!r})"
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "memory-question"]


# name: ({solution grade_id: code}, edit, (scores), {flags})
SUBMISSIONS = {
    "honest": ({"rnn-step-solution": STEP, "rnn-unroll-solution": UNROLL, "rnn-bptt-solution": BPTT}, None, (2, 3, 4), set()),
    "wrong": ({"rnn-step-solution": WRONG_STEP, "rnn-unroll-solution": UNROLL, "rnn-bptt-solution": ZERO_BPTT}, None, (0, 0, 0), set()),
    "partial": (
        {"rnn-step-solution": NO_BIAS_STEP, "rnn-unroll-solution": UNROLL, "rnn-bptt-solution": BPTT},
        None,
        (1, 1, 1),  # the worked-example cases have b = 0, so they pass; the others fail
        set(),
    ),
    "unattempted": ({}, None, (0, 0, 0), set()),
    "infinite-loop": (
        {"rnn-step-solution": STEP, "rnn-unroll-solution": SWALLOWING_LOOP, "rnn-bptt-solution": PLAIN_LOOP},
        None,
        (2, 0, 0),
        {"timeout:rnn-unroll", "timeout:rnn-bptt"},
    ),
    "memory-hog": ({"rnn-step-solution": MEMORY_HOG}, None, (0, 0, 0), {"memory:rnn-step"}),
    "monkeypatch": (
        {"rnn-step-solution": MONKEYPATCH},
        None,
        (0, 0, 0),
        {"suspicious:monkeypatch", "tampered:numpy.abs", "tampered:numpy.allclose", "tampered:torch.allclose"},
    ),
    "redefined-check": (
        {"rnn-step-solution": redefined_check()},
        None,
        (0, 0, 0),
        # rnn-unroll's hidden test then raises (the stub), which scores 0 before check is missed
        {"suspicious:redefines:check", "tampered:check", "check-missing:rnn-step", "check-missing:rnn-bptt"},
    ),
    "input-transformer": (
        {"rnn-step-solution": INPUT_TRANSFORMER, "rnn-unroll-solution": UNROLL, "rnn-bptt-solution": BPTT},
        None,
        (0, 0, 0),
        {"suspicious:input-transformer", "tampered:input-transformers", *(f"check-missing:{q}" for q in QUESTIONS)},
    ),
    "edited-locked-cell": (
        {"rnn-unroll-solution": STEP + UNROLL},
        edit_locked_cells,
        (0, 3, 0),
        {"locked-cell-edited:rnn-step", "locked-cell-deleted:memory-question"},
    ),
    "fake-results": ({"rnn-step-solution": FAKE_RESULTS}, None, (0, 0, 0), {"fake-results", "suspicious:file-access"}),
    "hard-coded": ({"rnn-step-solution": hard_coded_step()}, None, (0, 0, 0), {"variant-failed:rnn-step"}),
    # Cross-submission tampering: rewrite the course package, kill what looks like the grader.
    # Sorted first, so the rest of the batch (a wrong answer included) runs after it.
    "a-tamper-package": ({"rnn-step-solution": TAMPER_PACKAGE}, None, (0, 0, 0),
                         {"runtime:write-outside", "runtime:process", "suspicious:file-access", "suspicious:process"}),
    "z-wrong-after-tamper": ({"rnn-step-solution": WRONG_STEP}, None, (0, 0, 0), set()),
    # Solution theft: look for the solution notebook next to the package and in PID 1's command
    # line, read it with an obfuscated open, exec its solution cell (nothing to find in the sandbox).
    "steal-solution": ({"rnn-step-solution": STEAL_SOLUTION}, None, (0, 0, 0),
                       {"runtime:reads-process", "suspicious:file-access", "suspicious:process"}),
    "reference-reuse": ({"rnn-step-solution": REFERENCE_REUSE}, None, (0, 0, 0), {"runtime:course-import", "suspicious:exec"}),
    "course-model": (
        {"rnn-step-solution": COURSE_MODEL, "rnn-unroll-solution": UNROLL, "rnn-bptt-solution": BPTT},
        None,
        (0, 0, 0),
        {"runtime:course-import", *(f"forbidden:{q}:seqcourse" for q in QUESTIONS), "forbidden:rnn-step:torch.nn",
         "forbidden:rnn-unroll:torch.nn"},
    ),
    "autograd": ({"rnn-step-solution": STEP, "rnn-unroll-solution": UNROLL, "rnn-bptt-solution": AUTOGRAD_BPTT}, None,
                 (2, 3, 0), {"forbidden:rnn-bptt:autograd"}),
    "grader-detection": ({"rnn-step-solution": GRADER_DETECTION}, None, (0, 0, 0),
                         {"runtime:reads-process", "runtime:course-import", "suspicious:exec", "suspicious:file-access",
                          "suspicious:grading-internals"}),
    "detached-children": ({"rnn-step-solution": STEP + DETACHED_CHILDREN}, None, (2, 0, 0),
                          {"runtime:process", "suspicious:file-access", "suspicious:process"}),
    "disk-fill": ({"rnn-step-solution": STEP + DISK_FILL}, None, (2, 0, 0), {"runtime:write-outside", "suspicious:file-access"}),
    "kill-grader": ({"rnn-step-solution": STEP + KILL_GRADER, "rnn-unroll-solution": UNROLL}, None, (2, 3, 0),
                    {"runtime:process", "suspicious:process"}),
    "null-bytes": ({"rnn-step-solution": STEP.replace("return", "return\0")}, None, (2, 0, 0), {"null-bytes:rnn-step-solution"}),
}


def make_submission(path, solutions, edit=None):
    nb = nbformat.read(EXERCISE, as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in solutions:
            cell.source = textwrap.dedent(solutions[grade_id]).strip()
    if edit is not None:
        edit(nb)
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submitted")
    for name, (solutions, edit, _, _) in SUBMISSIONS.items():
        make_submission(folder / f"{name}.ipynb", solutions, edit)
    (folder / "unreadable.ipynb").write_text("{ this is not a notebook")
    malformed = json.loads((folder / "honest.ipynb").read_text())
    for cell in malformed["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "rnn-step-solution":
            cell["source"] = 42
    (folder / "malformed-source.ipynb").write_text(json.dumps(malformed))
    out = folder.parent / "grades.csv"
    args = [str(SOLUTION), str(folder), "--out", str(out), "--jobs", "2", "--cell-timeout", "4"]
    args += ["--time-limit", "120", "--memory-mb", "1500", "--quiet"]
    assert main(args) == 0
    with open(out, newline="") as stream:
        table = list(csv.reader(stream))
    data = json.loads(out.with_suffix(".json").read_text())
    return table, data


def rows(table):
    header, *body = table
    return {row[0].removesuffix(".ipynb"): dict(zip(header, row)) for row in body}


@pytest.mark.parametrize("name", SUBMISSIONS)
def test_each_submission_gets_exactly_its_scores_and_flags(graded, name):
    table, _ = graded
    row = rows(table)[name]
    scores, flags = SUBMISSIONS[name][2], SUBMISSIONS[name][3]
    assert tuple(float(row[q]) for q in QUESTIONS) == scores
    assert float(row["total"]) == sum(scores) and row["max_total"] == "9"
    assert set(row["flags"].split()) == flags


def test_an_unreadable_notebook_scores_zero_and_is_flagged(graded):
    table, data = graded
    assert rows(table)["unreadable"]["flags"] == "unreadable"
    assert rows(table)["unreadable"]["total"] == "0"
    entry = next(s for s in data["submissions"] if s["submission"] == "unreadable.ipynb")
    assert entry["error"].startswith("unreadable:")


def test_a_cell_whose_source_is_not_text_runs_the_stub_and_is_flagged(graded):
    table, _ = graded
    row = rows(table)["malformed-source"]
    # the released stub runs: rnn-unroll and rnn-bptt, which call it, fail too
    assert (row["rnn-step"], row["rnn-unroll"], row["rnn-bptt"], row["flags"]) == ("0", "0", "0", "malformed-source:rnn-step-solution")
    _, data = graded
    entry = next(s for s in data["submissions"] if s["submission"] == "malformed-source.ipynb")
    assert entry["error"] is None  # a flagged row, not a grader error


def test_nothing_a_submission_started_or_wrote_outlives_its_sandbox(graded):
    """The detached children (setsid, holding the result pipe) died with the sandbox's PID
    namespace and did not stall grading; the files written to fill the disk are gone."""
    _, data = graded
    commands = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            commands.append((proc / "cmdline").read_bytes())
    assert not [c for c in commands if c in (b"sleep\0" + b"987\0",)] and not any(b"986" in c and b"sleep" in c for c in commands)
    detached = next(s for s in data["submissions"] if s["submission"] == "detached-children.ipynb")
    assert detached["seconds"] < 30 and detached["attempts"] == 1
    assert not Path("/var/tmp/fill").exists() and not Path("/dev/shm/fill").exists()
    findings = next(s for s in data["submissions"] if s["submission"] == "disk-fill.ipynb")["runtime_audit"]
    assert {(f["rule"], f["cell"], f["detail"]) for f in findings} == {
        ("write-outside", "rnn-step-solution", path) for path in ("/var/tmp/fill", "/dev/shm/fill", "/course/fill")}


def test_runtime_findings_name_the_cell_and_line(graded):
    _, data = graded
    by_name = {s["submission"].removesuffix(".ipynb"): s for s in data["submissions"]}
    reuse = by_name["reference-reuse"]["runtime_audit"]
    assert {(f["rule"], f["cell"], f["line"], f["detail"]) for f in reuse} == {  # through importlib, not an import statement
        ("course-import", "rnn-step-solution", 4, "seqcourse.grading.questions"),
        ("course-import", "rnn-step-solution", 4, "seqcourse.grading.questions.recurrence")}
    bptt = by_name["autograd"]["questions"]["rnn-bptt"]
    assert bptt["reason"] == "the function used autograd, which this question forbids"
    assert {(f["rule"], f["detail"]) for f in by_name["detached-children"]["runtime_audit"]} == {
        ("process", "subprocess.Popen"), ("process", "os.fork")}


def test_csv_has_one_column_per_question_then_total_max_and_flags(graded):
    table, _ = graded
    assert table[0] == ["submission", *QUESTIONS, "total", "max_total", "flags"]
    expected = [f"{n}.ipynb" for n in SUBMISSIONS] + ["unreadable.ipynb", "malformed-source.ipynb"]
    assert sorted(row[0] for row in table[1:]) == sorted(expected)


def test_json_holds_the_table_and_the_evidence_per_case(graded):
    _, data = graded
    assert [q["id"] for q in data["questions"]] == list(QUESTIONS) and data["max_total"] == 9
    assert data["limits"]["cell_timeout"] == 4 and data["limits"]["memory_mb"] == 1500 and data["fresh_draws"]
    by_name = {s["submission"].removesuffix(".ipynb"): s for s in data["submissions"]}
    honest = by_name["honest"]
    assert honest["scores"] == {"rnn-step": 2, "rnn-unroll": 3, "rnn-bptt": 4} and honest["flags"] == []
    step = honest["questions"]["rnn-step"]
    assert step["in_kernel"] == {"attempted": True, "passed": [True] * 4, "earned": 2.0}
    assert all(case["passed"] and case["max_abs_error"] < 1e-6 for case in step["out_of_kernel"]["cases"])
    assert len(step["fresh_draws"]) == 4 and all(case["passed"] for case in step["fresh_draws"])
    # Monkeypatching NumPy changes nothing: nothing is compared inside the kernel.
    patched = by_name["monkeypatch"]["questions"]["rnn-step"]
    assert patched["in_kernel"]["passed"] == [False] * 4
    assert not any(case["passed"] for case in patched["out_of_kernel"]["cases"])
    assert any(f["flag"] == "suspicious:monkeypatch" and f["code"].startswith("np.allclose") for f in by_name["monkeypatch"]["audit"])
    assert by_name["redefined-check"]["questions"]["rnn-step"]["reason"] == "check() recorded nothing for this question in its test cell"
    # The hard-coded answers pass the published cases and fail the fresh draws of the random ones.
    coded = by_name["hard-coded"]["questions"]["rnn-step"]
    assert [c["passed"] for c in coded["out_of_kernel"]["cases"]] == [True] * 4
    assert [c["passed"] for c in coded["fresh_draws"]] == [True, True, False, False]
    # Timeouts are said per question; the loop that swallowed the interrupt needed a replay.
    looping = by_name["infinite-loop"]
    assert looping["questions"]["rnn-unroll"]["reason"] == "did not finish: timeout:rnn-unroll"
    assert looping["attempts"] == 3
    assert by_name["partial"]["questions"]["rnn-step"]["in_kernel"]["passed"] == [True, True, False, False]
    assert by_name["unattempted"]["manual_answers"] == {"memory-answer": "YOUR ANSWER HERE"}


# ---- the solution notebook is graded first and must pass ------------------------------------


def test_a_solution_notebook_that_fails_in_the_sandbox_stops_grading(tmp_path):
    nb = nbformat.read(SOLUTION, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "rnn-step-solution":
            cell.source = cell.source.replace("return torch.tanh(pre_activation)", "return -torch.tanh(pre_activation)")
    broken = tmp_path / "solution.ipynb"
    nbformat.write(nb, broken)
    make_submission(tmp_path / "student.ipynb", {})
    with pytest.raises(GradingError, match=r"does not pass its own checks in the sandbox:\n  rnn-step: 0/2 \(case 'worked example, step 1"):
        grade(broken, [("student", tmp_path / "student.ipynb")], limits=Limits(cell_timeout=10, time_limit=60), progress=False)


def test_a_notebook_without_solutions_or_checks_cannot_drive_grading(tmp_path, capsys):
    with pytest.raises(PlanError, match="needs a '### BEGIN SOLUTION'"):
        load_plan(EXERCISE)
    nb = nbformat.read(SOLUTION, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "rnn-step":
            cell.metadata["nbgrader"]["points"] = 5
    nbformat.write(nb, tmp_path / "points.ipynb")
    with pytest.raises(PlanError, match=r"'rnn-step'\): the cell has points 5 but its checks are worth 2"):
        load_plan(tmp_path / "points.ipynb")
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "rnn-step":
            cell.metadata["nbgrader"]["points"] = 2
            cell.source = "assert rnn_step is not None"
    nbformat.write(nb, tmp_path / "assert.ipynb")
    with pytest.raises(PlanError, match="needs a check"):
        load_plan(tmp_path / "assert.ipynb")
    make_submission(tmp_path / "student.ipynb", {})
    assert main([str(tmp_path / "assert.ipynb"), str(tmp_path / "student.ipynb"), "--out", str(tmp_path / "g.csv")]) == 1
    assert "needs a check" in capsys.readouterr().err
    assert not (tmp_path / "g.csv").exists()


# ---- assembling: only the student's solution cells run ---------------------------------------


def test_assembly_takes_solution_cells_by_grade_id_and_everything_else_from_the_instructor():
    plan = load_plan(SOLUTION)
    nb = nbformat.read(EXERCISE, as_version=4)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id") == "rnn-step-solution":
            cell.source = "def rnn_step(*args):\n    return 1"
        if meta.get("grade_id") == "rnn-unroll":  # a student who marks a test cell as theirs
            meta["solution"], meta["locked"] = True, False
    nb.cells.insert(3, nbformat.v4.new_code_cell("print('scratch')"))
    nb.cells.insert(3, nbformat.v4.new_code_cell("   "))
    nb.cells.append(nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade_id": "rnn-step-solution"}}))
    assembly = assemble(plan, nb)
    sources = {cell.plan.label: cell.source for cell in assembly.cells}
    assert sources["rnn-step-solution"] == "def rnn_step(*args):\n    return 1"
    assert "### BEGIN HIDDEN TESTS" in sources["rnn-unroll"]  # the instructor's copy, hidden tests included
    assert [cell.plan.label for cell in assembly.student_cells] == [f"{q}-solution" for q in QUESTIONS]
    assert "print('scratch')" not in sources.values()
    assert sorted(assembly.flags) == ["duplicate-grade-id:rnn-step-solution", "extra-cells-ignored:1"]


def test_assembly_flags_edited_and_deleted_locked_cells_and_missing_solutions():
    plan = load_plan(SOLUTION)
    nb = nbformat.read(EXERCISE, as_version=4)
    edit_locked_cells(nb)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "rnn-bptt-solution"]
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "setup":
            cell.source += "\n"  # trailing whitespace is not an edit
    assembly = assemble(plan, nb)
    expected = ["locked-cell-deleted:memory-question", "locked-cell-edited:rnn-step", "solution-cell-missing:rnn-bptt-solution"]
    assert sorted(assembly.flags) == expected
    bptt = next(cell for cell in assembly.cells if cell.plan.label == "rnn-bptt-solution")
    assert bptt.source.endswith("raise NotImplementedError()")  # the released stub runs instead
    assert next(c for c in assembly.cells if c.plan.label == "rnn-step").source == 'check("rnn-step", rnn_step)'


# ---- the static audit ------------------------------------------------------------------------

PROTECTED = {"torch": "torch", "check": "seqcourse.grading.check", "all": "builtins.all", "zip": "builtins.zip"}
AUDIT_CASES = {
    "honest": (STEP + UNROLL + BPTT, set()),
    "re-importing what the setup imported": ("import torch\nfrom seqcourse.grading import check\n" + STEP, set()),
    "magics that only time or plot": ("%matplotlib inline\n%time y = 1\n" + STEP, set()),
    "numpy attribute": ("import numpy as np\nnp.allclose = lambda *a, **k: True", {"monkeypatch"}),
    "aliased module": ("import numpy as xx\nxx.testing.assert_allclose = print", {"monkeypatch"}),
    "torch class attribute": ("torch.Tensor.__eq__ = lambda a, b: True", {"monkeypatch"}),
    "setattr on a module": ("setattr(torch, 'allclose', lambda *a: True)", {"monkeypatch"}),
    "os.environ": ("import os\nos.environ['SEQCOURSE_STRICT'] = '0'", {"monkeypatch"}),
    "check redefined": ("def check(*args):\n    print('passed')", {"redefines:check"}),
    "check rebound through global": ("def f():\n    global check\n    check = print", {"redefines:check"}),
    "torch replaced": ("import numpy as torch", {"redefines:torch"}),
    "builtin the hidden tests use": ("all = lambda items: True", {"redefines:all"}),
    "input transformer": ("get_ipython().input_transformers_cleanup.append(lambda lines: [])", {"input-transformer"}),
    "ast transformer by name": ("ip = get_ipython()\ngetattr(ip, 'ast_transformers').append(None)", {"input-transformer", "ipython"}),
    "ipython events": ("get_ipython().events.register('post_run_cell', print)", {"ipython"}),
    "cell magic body is audited": ("%%capture\nexec('x = 1')", {"exec"}),
    "shell escape": ("!rm -rf results", {"process"}),
    "exec": ("exec('rnn_step = None')", {"exec"}),
    "importlib": ("import importlib\nm = importlib.import_module('numpy')", {"exec"}),
    "__import__": ("np = __import__('numpy')", {"exec"}),
    "frames": ("import sys\nsys._getframe(1).f_globals['check'] = print", {"introspection"}),
    "globals": ("globals()['check'] = print", {"introspection"}),
    "gc": ("import gc\ngc.get_objects()", {"introspection"}),
    "sys.modules": ("import sys\nsys.modules['numpy'] = None", {"introspection", "monkeypatch"}),
    "subprocess": ("import subprocess\nsubprocess.run(['ls'])", {"process"}),
    "kill": ("import os\nos.kill(os.getppid(), 9)", {"process"}),
    "threads": ("import threading", {"process"}),
    "open": ("with open('results.json', 'w') as f:\n    f.write('{}')", {"file-access"}),
    "numpy save": ("import numpy as np\nnp.save('out.npy', np.zeros(2))", {"file-access"}),
    "grading registry": ("from seqcourse.grading.questions.recurrence import _step_reference", {"grading-internals"}),
    "expected outputs": ("r = check('rnn-step', rnn_step)\nT = r.cases[0].expected", {"grading-internals"}),
    "grading module by string": ("m = 'seqcourse.grading.registry'", {"grading-internals"}),
}


@pytest.mark.parametrize("name", AUDIT_CASES)
def test_audit_rule(name):
    source, rules = AUDIT_CASES[name]
    findings = audit([("rnn-step-solution", source, PROTECTED)])
    assert {finding.rule for finding in findings} == rules
    assert all(finding.cell == "rnn-step-solution" and finding.flag == f"suspicious:{finding.rule}" for finding in findings)


def test_audit_reports_the_line_and_code_of_each_finding_across_cells():
    findings = audit([("a", "import numpy as np\n\nx = 1", {}), ("b", "y = 2\nnp.abs = abs", {})])
    assert [(f.cell, f.line, f.code, f.rule) for f in findings] == [("b", 2, "np.abs = abs", "monkeypatch")]


def test_the_plan_protects_what_instructor_cells_define_before_a_solution_cell():
    plan = load_plan(SOLUTION)
    step_cell = next(cell for cell in plan.cells if cell.label == "rnn-step-solution")
    protected = plan.protected_before(step_cell.index)
    assert protected["torch"] == "torch" and protected["check"] == "seqcourse.grading.check"
    assert protected["all"] == "builtins.all"  # read by the hidden tests
    assert "W_h" not in protected  # bound by an instructor cell after the solutions
    assert set(plan.imports) >= {"torch", "seqcourse.grading"}


# ---- the in-kernel report and the raw outputs ------------------------------------------------


def test_what_check_records_in_the_kernel_is_judged_like_the_recording():
    plan = load_plan(SOLUTION)
    qp = next(qp for qp in plan_questions(plan, variants=False) if qp.question.id == "rnn-step")
    question = qp.question

    def recorded(function):
        return {"checks": [{"question": "rnn-step", "forbidden": [],
                            "outcomes": [outcome_to_wire(o) for o in run_student(question, function)]}]}

    right = lambda x_t, h, W_x, W_h, b: __import__("torch").tanh(x_t @ W_x.T + h @ W_h.T + b)  # noqa: E731
    no_bias = lambda x_t, h, W_x, W_h, b: __import__("torch").tanh(x_t @ W_x.T + h @ W_h.T)  # noqa: E731
    for function, passed in ((right, (True,) * 4), (no_bias, (True, True, False, False))):
        report = kernel_report(recorded(function), qp, None)
        assert report.passed == passed and agrees(report, score(question, run_student(question, function)))
        assert not agrees(report, score(question, run_student(question, lambda *a: -right(*a))))

    def stub(*args):
        raise NotImplementedError

    report = kernel_report(recorded(stub), qp, None)
    assert not report.attempted and agrees(report, score(question, run_student(question, stub)))
    assert kernel_report({"checks": []}, qp, None) is None  # check was replaced or never ran
    malformed = recorded(right)
    malformed["checks"][0]["outcomes"][0] = {"values": {"h_t": {"shape": [2], "data": "AAAA"}}}
    assert kernel_report(malformed, qp, None) is None


def test_raw_outputs_are_float64_bytes_and_anything_else_is_refused():
    import base64
    import pickle

    def encoded(array):
        return {"shape": list(array.shape), "data": base64.b64encode(np.asarray(array, "<f8").tobytes()).decode()}

    good = outcome_from_wire({"values": {"h_t": encoded(np.arange(6.0).reshape(2, 3))}}, ("h_t",))
    np.testing.assert_array_equal(good.values["h_t"], np.arange(6.0).reshape(2, 3))
    assert good.values["h_t"].dtype == np.float64 and good.values["h_t"].flags.writeable
    scalar = outcome_from_wire(outcome_to_wire(StudentOutcome(values={"e": np.array(2.5)})), ("e",))
    assert scalar.values["e"].shape == () and scalar.values["e"] == 2.5  # a 0-d output stays 0-d (chapters 2 and 4)
    assert outcome_from_wire({"not_implemented": True}, ("h_t",)).not_implemented
    assert outcome_from_wire({"error": "raised ValueError"}, ("h_t",)).error == "raised ValueError"
    pickled = base64.b64encode(pickle.dumps(np.zeros(2))).decode()
    for bad in (
        {"values": {"h_t": {"shape": [2], "data": pickled}}},  # a pickle is just bytes of the wrong length
        {"values": {"h_t": {"shape": [3], "data": encoded(np.zeros(2))["data"]}}},
        {"values": {"h_t": {"shape": [-1], "data": ""}}},
        {"values": {"h_t": {"shape": [10**9], "data": ""}}},
        {"values": {"other": encoded(np.zeros(2))}},
        {"values": {"h_t": {"shape": [2], "data": "not base64!"}}},
        ["a list"],
    ):
        assert outcome_from_wire(bad, ("h_t",)) is None


def test_score_can_compare_with_reference_outputs_computed_elsewhere():
    question = get_question("rnn-step")
    outcomes = [StudentOutcome(values={"h_t": np.zeros((1, 2))})] + [StudentOutcome(not_implemented=True)] * 3
    expected = [{"h_t": np.zeros((1, 2))}] * 4
    result = score(question, outcomes, expected=expected)
    assert [case.passed for case in result.cases] == [True, False, False, False]
    assert score(question, outcomes).cases[0].passed is False  # the real reference is not zero
    with pytest.raises(ValueError, match="4 cases, got 3 expected outputs"):
        score(question, outcomes, expected=expected[:3])


def test_collect_names_submissions_by_path_and_rejects_duplicates(tmp_path):
    for student in ("ann", "bob"):
        (tmp_path / "in" / student).mkdir(parents=True)
        (tmp_path / "in" / student / "01_recurrence.ipynb").write_text("{}")
    (tmp_path / "in" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "in" / ".ipynb_checkpoints" / "x.ipynb").write_text("{}")
    names = [name for name, _ in collect([tmp_path / "in"], SOLUTION)]
    assert names == ["ann/01_recurrence.ipynb", "bob/01_recurrence.ipynb"]
    with pytest.raises(ValueError, match="same name"):
        collect([tmp_path / "in", tmp_path / "in"], SOLUTION)
    with pytest.raises(FileNotFoundError):
        collect([tmp_path / "missing"], SOLUTION)


# ---- the sandbox on its own ------------------------------------------------------------------


@pytest.fixture(scope="module")
def launcher():
    os.environ["SEQCOURSE_TEST_SECRET"] = "grader-only"
    try:
        with Launcher() as sandbox:
            yield sandbox
    finally:
        del os.environ["SEQCOURSE_TEST_SECRET"]


def cells(*sources, origin="student"):
    return [Unit(f"c{i}", "cell", {"source": source, "protect": [], "label": f"cell-{i}", "origin": origin})
            for i, source in enumerate(sources)]


PROBE = """
import os, resource, socket, sys
print(os.getuid(), os.getgid(), os.getcwd(), os.environ["HOME"], os.environ["TMPDIR"], [n for n in os.listdir(".") if n != ".ipython"])
print("SEQCOURSE_TEST_SECRET" in os.environ, sys.argv[0].endswith("ipykernel_launcher.py"), sys.flags.isolated)
print([resource.getrlimit(r)[0] for r in (resource.RLIMIT_AS, resource.RLIMIT_NPROC, resource.RLIMIT_FSIZE)])
notebooks = [os.path.join(r, n) for top in os.listdir("/") if top not in ("proc", "sys", "dev", "usr") for r, _, names in os.walk("/" + top) for n in names if n.endswith("recurrence.ipynb")]
print(notebooks, os.path.exists(sys.argv[-1]), sorted(os.listdir("/course")), os.listdir("/course/seqcourse/grading/questions"))
print(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
for path in ("/course/seqcourse/x", "/usr/x", os.path.expanduser("~/x"), "/tmp/x"):
    try:
        open(path, "w").close()
        print("wrote", path)
    except OSError as error:
        print(type(error).__name__, path)
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
except OSError as error:
    print("network:", type(error).__name__)
import ctypes
print("dumpable:", ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))  # PR_GET_DUMPABLE
"""


def test_a_submission_runs_alone_in_a_sandbox_that_shows_none_of_the_machine(launcher, tmp_path):
    """uid 65534, its own home and /tmp, a kernel's argv, rlimits, nothing of the machine but the
    system and the package (without the question registry), a PID namespace of its own, no
    network, a read-only course, and a non-dumpable process."""
    probe = PROBE.replace("sys.argv[-1]", repr(str(tmp_path)))
    record = run_units(launcher, cells(probe), Limits(memory_mb=1500, processes=50, file_size_mb=8), tmp_path)
    lines = record.results["c0"]["stdout"].splitlines()
    assert lines[0] == "65534 65534 /home/student /home/student /tmp []"
    assert lines[1] == "False True 1"
    memory, processes, file_size = json.loads(lines[2])
    assert (memory, file_size) == (1500 * 2**20, 8 * 2**20)
    assert processes == 50 if os.geteuid() == 0 else 50 <= processes < 2**20  # plus the user's own processes
    assert lines[3] == "[] False ['seqcourse'] []"  # no solution notebook anywhere, no grader folder, no question registry
    assert lines[4] == "[1, 2]"  # bubblewrap's init and the worker: no other process of the machine
    assert lines[5:9] == ["OSError /course/seqcourse/x", "OSError /usr/x", "wrote /home/student/x", "wrote /tmp/x"]
    assert lines[9].startswith("network: ") and lines[10] == "dumpable: 0"
    assert {(f["rule"], f["detail"]) for f in record.results["c0"]["runtime"]} >= {
        ("write-outside", "/course/seqcourse/x"), ("write-outside", "/usr/x"), ("socket", "socket.__new__")}


def test_a_crash_is_recorded_and_the_rest_replayed_and_nothing_started_survives(launcher, tmp_path):
    record = run_units(
        launcher,
        cells(
            "import os, subprocess\nchild = subprocess.Popen(['setsid', 'sleep', '61'])\nprint(child.pid)",
            "os._exit(3)",
            "print('after')",
        ),
        Limits(),
        tmp_path,
    )
    assert record.crashed == [("c1", 3)] and record.attempts == 2
    assert record.results["c2"]["stdout"] == "after\n"
    deadline = time.monotonic() + 5  # the PID namespace ended with the worker; its processes go with it
    while _processes(b"sleep\x0061\x00") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes(b"sleep\x0061\x00")


def _processes(command: bytes) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and (proc / "cmdline").read_bytes() == command:
                found.append(int(proc.name))
    return found


def test_the_total_time_limit_stops_a_submission_and_output_is_capped(launcher, tmp_path):
    limits = Limits(cell_timeout=5, time_limit=4, output_limit=1000)
    record = run_units(launcher, cells("print('x' * 5000)", "import time\ntime.sleep(1.5)", "time.sleep(3)", "print('never')"), limits, tmp_path)
    assert record.time_limit_hit and "c3" not in record.results and record.timed_out == []
    assert record.results["c0"]["stdout"] == "x" * 1000 + "\n[4001 more characters not kept]"


def test_a_fork_bomb_meets_the_process_limit(launcher, tmp_path):
    bomb = "import os\nn = 0\ntry:\n    while n < 500:\n        if os.fork() == 0:\n            import time; time.sleep(30)\n        n += 1\nexcept OSError as e:\n    print(n, type(e).__name__)"
    record = run_units(launcher, cells(bomb), Limits(processes=20, cell_timeout=20), tmp_path)
    forked, error = record.results["c0"]["stdout"].split()
    assert int(forked) < 20 and error == "BlockingIOError"


def test_without_bubblewrap_grading_refuses_and_names_the_install(tmp_path, monkeypatch, capsys):
    from seqcourse.autograde import sandbox

    make_submission(tmp_path / "honest.ipynb", SUBMISSIONS["honest"][0])
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    sandbox.check_sandbox.cache_clear()
    try:
        assert main([str(SOLUTION), str(tmp_path / "honest.ipynb"), "--out", str(tmp_path / "g.csv"), "--quiet"]) == 1
    finally:
        sandbox.check_sandbox.cache_clear()
    err = capsys.readouterr().err
    assert "bubblewrap (bwrap) is not installed" in err and "apt-get install -y bubblewrap" in err and "--no-sandbox" in err
    assert not (tmp_path / "g.csv").exists()


def test_unsandboxed_every_row_is_flagged_and_the_runtime_audit_still_sees_theft(tmp_path):
    """With --no-sandbox the solution notebook can be found (next to the package, in the grader's
    command line) and its cells exec'd: the row scores, but says what happened."""
    folder = tmp_path / "submitted"
    folder.mkdir()
    make_submission(folder / "honest.ipynb", SUBMISSIONS["honest"][0])
    make_submission(folder / "steal.ipynb", {"rnn-step-solution": STEAL_SOLUTION})
    out = tmp_path / "grades.csv"
    assert main([str(SOLUTION), str(folder), "--out", str(out), "--quiet", "--jobs", "2", "--no-sandbox"]) == 0
    table = rows(list(csv.reader(out.open(newline=""))))
    assert table["honest"]["flags"] == "unsandboxed" and table["honest"]["total"] == "9"
    assert set(table["steal"]["flags"].split()) == {"unsandboxed", "runtime:reads-notebook", "runtime:reads-process",
                                                    "runtime:exec", "suspicious:file-access", "suspicious:process"}


def test_a_worker_that_exited_is_not_waited_for_when_a_detached_child_holds_its_pipe(tmp_path):
    """Unsandboxed (no PID namespace to end it), a child in its own session keeps the result pipe
    open after the worker exits; grading goes on at once."""
    holder = ("import os, subprocess\nfds = [int(fd) for fd in os.listdir('/proc/self/fd') if int(fd) > 2]\n"
              "subprocess.Popen(['sleep', '62'], start_new_session=True, pass_fds=fds)\nos._exit(0)")
    start = time.monotonic()
    with Launcher(sandboxed=False) as plain:
        record = run_units(plain, cells(holder, "print('after')"), Limits(time_limit=50), tmp_path)
    assert time.monotonic() - start < 15 and record.crashed == [("c0", 0)]
    for pid in _processes(b"sleep\x0062\x00"):  # no PID namespace ended it (a root grader's pids cgroup may have)
        os.kill(pid, 9)


# ---- never lose a batch ----------------------------------------------------------------------------

def test_output_paths_are_checked_before_anything_is_graded(tmp_path, capsys):
    make_submission(tmp_path / "honest.ipynb", SUBMISSIONS["honest"][0])
    start = time.monotonic()
    with pytest.raises(SystemExit) as stop:
        main([str(SOLUTION), str(tmp_path / "honest.ipynb"), "--out", str(tmp_path / "missing" / "g.csv"), "--quiet"])
    assert stop.value.code == 2 and time.monotonic() - start < 5  # refused at once, nothing graded
    assert "does not exist; create it first" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(SOLUTION), str(tmp_path / "honest.ipynb"), "--out", str(tmp_path / "g.csv"),
              "--json", str(tmp_path / "g.csv"), "--quiet"])
    assert "the output files must differ" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(SOLUTION), str(tmp_path / "honest.ipynb"), "--out", str(tmp_path), "--quiet"])
    assert "is a folder" in capsys.readouterr().err


SLEEPING_STEP = """
import time
time.sleep(120)
""" + STEP


def test_a_terminated_batch_keeps_every_row_graded_before_the_signal(tmp_path):
    """Rows are saved as they finish; SIGTERM (here from outside, as a student's process could send
    it) ends the batch with 143 and a message, and the table holds what was graded, marked incomplete."""
    import signal
    import subprocess
    import sys

    folder = tmp_path / "submitted"
    folder.mkdir()
    make_submission(folder / "a_honest.ipynb", SUBMISSIONS["honest"][0])
    make_submission(folder / "b_sleeping.ipynb", dict(SUBMISSIONS["honest"][0], **{"rnn-step-solution": SLEEPING_STEP}))
    out = tmp_path / "grades.csv"
    child = subprocess.Popen([sys.executable, "-m", "seqcourse", "grade", str(SOLUTION), str(folder), "--out", str(out),
                              "--jobs", "1", "--quiet", "--cell-timeout", "200", "--time-limit", "300"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not out.exists() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.2)
    assert out.exists(), "the first row was not saved as it finished"
    time.sleep(1)  # the second submission is now asleep in its sandbox
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 128 + signal.SIGTERM
    assert "interrupted" in err and "1 of 2 submissions graded and saved" in err
    table = list(csv.reader(out.open(newline="")))
    assert [row[0] for row in table[1:]] == ["a_honest.ipynb"] and table[1][-3] == "9"
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["complete"] is False and [s["submission"] for s in data["submissions"]] == ["a_honest.ipynb"]
