"""The grading code that runs inside the sandbox: one process per submission and attempt.

:mod:`seqcourse.autograde.sandbox` starts it (inside bubblewrap, or, with ``--no-sandbox``, as a
plain child process) as ``python -I -c BOOT SPEC_FD RESULT_FD CONTROL_FD``. It

1. makes itself non-dumpable, reads its job (cells, recordings, the questions' inputs) from
   ``SPEC_FD``, takes the environment, working folder and ``sys.argv`` of a Jupyter kernel, and
   imports NumPy, torch, IPython and what the notebook imports;
2. installs the runtime audit (:mod:`seqcourse.autograde.runtime_audit`) and a recorder behind
   ``check()`` (:func:`seqcourse.grading.check.record_checks_with`): in the sandbox ``check``
   compares nothing, it runs the function on the question's cases and records the outputs;
3. runs the cells in order in an IPython shell, as a Jupyter kernel would, and after each graded
   cell calls the student's function itself on the inputs the grader sent (not through
   ``run_cell``, so no input transformer can rewrite that call), watched for what the question
   forbids.

What it reports goes over ``RESULT_FD`` as JSON lines in the format of
:mod:`seqcourse.grading.wire`, each with the nonce the grader sent with the job; it never
receives the expected outputs, and the question registry with its reference implementations is
not even mounted in the sandbox. A byte on ``CONTROL_FD`` interrupts the running unit (SIGINT,
as a notebook's stop button). A :class:`Monitor` compares, after every cell, the attributes of
NumPy, torch, builtins, seqcourse's grading modules and the shell's input transformers with a
snapshot taken before any student code ran, and reports what changed.

Everything here runs in the same process as the student's code, so it is tamper-evident rather
than tamper-proof: the sandbox is the wall, the grader judges the outputs outside this process,
and the static audit (:mod:`seqcourse.autograde.audit`) is a second opinion.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import signal
import sys
import threading

EXIT_INTERNAL = 70
_MISSING = object()
BASE_PRELOAD = (
    "numpy",
    "numpy.testing",
    "torch",
    "torch.nn.functional",
    "torch.testing",
    "IPython.core.interactiveshell",
    "traitlets.config",
    "seqcourse",
    "seqcourse.grading.check",
    "seqcourse.grading.wire",
)
# Watched for rebinding after every cell (modules by name; torch.Tensor and the shell's class too).
WATCHED_MODULES = (
    "builtins",
    "math",
    "numpy",
    "numpy.testing",
    "torch",
    "torch.nn.functional",
    "torch.testing",
    "seqcourse.grading",
    "seqcourse.grading.check",
    "seqcourse.grading.wire",
)
IGNORED_KEYS = frozenset({"_", "__", "___", "__warningregistry__"})
KERNEL_ARGV = ["/usr/lib/python3/dist-packages/ipykernel_launcher.py", "-f", "/home/student/.local/share/jupyter/runtime/kernel-1.json"]


def main(spec_fd: int, result_fd: int, control_fd: int) -> None:
    """Run one job (see the module docstring); exit 0 when every unit ran, 70 on an internal error."""
    code = EXIT_INTERNAL
    try:
        from .sandbox import not_dumpable  # imported in the worker, inside the sandbox, once the job has set the process up

        not_dumpable()
        with os.fdopen(spec_fd, "rb") as stream:
            spec = json.loads(stream.read())
        os.environ.clear()
        os.environ.update(spec["env"])
        os.chdir(spec["home"])
        sys.argv = list(KERNEL_ARGV)
        import tempfile

        tempfile.tempdir = None
        for name in BASE_PRELOAD + tuple(spec.get("preload", ())):
            with contextlib.suppress(Exception):  # a module this environment lacks: the cell that imports it says so
                importlib.import_module(name)
        code = Driver(spec, result_fd, control_fd=control_fd).run()
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
    finally:
        os._exit(code)


# ---- the cells, the recordings ---------------------------------------------------------------


class _Capture(io.StringIO):
    """A cell's stdout and stderr, up to ``limit`` characters (the rest is counted, not kept)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.dropped = limit, 0

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = max(self.limit - self.tell(), 0)
        if len(text) > room:
            self.dropped += len(text) - room
        super().write(text[:room])
        return len(text)

    def text(self) -> str:
        value = self.getvalue()
        return value + (f"\n[{self.dropped} more characters not kept]" if self.dropped else "")


class Channel:
    """JSON lines to the grader over the result pipe, each stamped with the job's nonce."""

    def __init__(self, fd: int, nonce: str):
        self.fd, self.nonce = fd, nonce

    def send(self, **message) -> None:
        data = memoryview((json.dumps({"nonce": self.nonce, **message}) + "\n").encode())
        while data:
            data = data[os.write(self.fd, data) :]


def _make_shell():
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class GradingShell(InteractiveShell):
        """A plain IPython shell (what a kernel runs) that accepts ``%matplotlib``."""

        def enable_gui(self, gui=None):
            return None

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "nocolor"
    return GradingShell.instance(config=config)


def _is_memory_error(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    try:
        text = str(exc)
    except Exception:
        return False
    return any(s in text for s in ("can't allocate memory", "Cannot allocate memory", "not enough memory", "out of memory"))


def _describe_error(exc: BaseException | None) -> dict | None:
    if exc is None:
        return None
    try:
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    except Exception:
        text = "(message could not be read)"
    return {"ename": type(exc).__name__, "evalue": text, "memory": _is_memory_error(exc)}


class Monitor:
    """Notices, after each cell, what student code rebinds in the modules the checks rely on.

    Findings are flag tokens, each reported once: ``tampered:numpy.allclose`` (an attribute of a
    watched module or class rebound or deleted, or a grading function's code replaced),
    ``tampered:sys.modules:numpy``, ``tampered:input-transformers``, ``tampered:ipython-events``,
    ``tampered:ipython-shell`` (a shell method shadowed on the instance), ``tampered:NAME`` (a
    name an instructor cell defined, such as ``check``, rebound by a student cell)."""

    def __init__(self, shell):
        import torch

        self.shell = shell
        self.watched = [(name, sys.modules[name]) for name in WATCHED_MODULES if name in sys.modules]
        self.watched += [("torch.Tensor", torch.Tensor), ("shell", type(shell)), ("InteractiveShell", type(shell).__mro__[1])]
        self.snapshots = {name: dict(vars(obj)) for name, obj in self.watched}
        self.modules = {name: obj for name, obj in self.watched if name in sys.modules}
        self.functions = {
            f"{name}.{key}": (value, value.__code__, value.__defaults__, value.__kwdefaults__)
            for name, obj in self.watched
            if name.startswith("seqcourse.")
            for key, value in vars(obj).items()
            if callable(value) and hasattr(value, "__code__")
        }
        self.transforms = self._transforms()
        self.events = self._events()
        self.instance_keys = set(vars(shell))
        self.protected: dict[str, object] = {}
        self.reported: set[str] = set()

    def _transforms(self):
        shell, manager = self.shell, self.shell.input_transformer_manager
        lists = (manager.cleanup_transforms, manager.line_transforms, manager.token_transformers)
        lists += (shell.input_transformers_post, shell.ast_transformers)
        return (id(manager),) + tuple(tuple(id(item) for item in seq) for seq in lists)

    def _events(self):
        """The shell's event callbacks, except those matplotlib and IPython register themselves
        (``%matplotlib inline`` adds one that shows figures after each cell)."""

        def own(callback) -> bool:
            return str(getattr(callback, "__module__", "")).startswith(("matplotlib", "IPython."))

        callbacks = sorted(self.shell.events.callbacks.items())
        return tuple((name, tuple(id(cb) for cb in cbs if not own(cb))) for name, cbs in callbacks)

    def findings(self, protect: list[str]) -> list[str]:
        """New findings since the last call; then remember the names in ``protect`` (bound by the
        instructor cell that just ran) as they are now."""
        found = []
        for name, obj in self.watched:
            current = vars(obj)
            for key, value in self.snapshots[name].items():
                if key not in IGNORED_KEYS and current.get(key, _MISSING) is not value:
                    found.append(f"tampered:{name}.{key}")
        for name, module in self.modules.items():
            if sys.modules.get(name) is not module:
                found.append(f"tampered:sys.modules:{name}")
        for qualified, (function, code, defaults, kwdefaults) in self.functions.items():
            if (function.__code__, function.__defaults__, function.__kwdefaults__) != (code, defaults, kwdefaults):
                found.append(f"tampered:{qualified}")
        if self._transforms() != self.transforms:
            found.append("tampered:input-transformers")
        if self._events() != self.events:
            found.append("tampered:ipython-events")
        shell_class = type(self.shell)
        for key in set(vars(self.shell)) - self.instance_keys:
            if callable(getattr(shell_class, key, None)):
                found.append("tampered:ipython-shell")
        namespace = self.shell.user_ns
        for name, value in self.protected.items():
            if name not in protect and namespace.get(name, _MISSING) is not value:
                found.append(f"tampered:{name}")
        for name in protect:
            if name in namespace:
                self.protected[name] = namespace[name]
        new = [flag for flag in dict.fromkeys(found) if flag not in self.reported]
        self.reported.update(new)
        return new


class Driver:
    """Runs one job: its cells in order, the recordings after graded cells, reporting each."""

    def __init__(self, spec: dict, result_fd: int, *, control_fd: int):
        import torch

        from seqcourse.grading import wire  # imported in the worker, inside the sandbox, once the job has set the process up

        from .runtime_audit import RuntimeAudit  # imported in the worker, inside the sandbox, once the job has set the process up

        torch.set_num_threads(1)
        self.spec, self.wire = spec, wire
        self.out = Channel(result_fd, spec["nonce"])
        self.control_fd = control_fd
        self.in_unit = False
        course = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.course = course
        self.own = (os.path.abspath(__file__), os.path.join(course, "autograde", "runtime_audit.py"))
        self.audit = RuntimeAudit(course, (spec["home"], spec["tmp"]))
        self.checks: list[dict] = []

    def _on_interrupt(self, signum, frame):
        if self.in_unit:
            raise KeyboardInterrupt

    def _listen(self) -> None:
        """Turn each byte on the control pipe into SIGINT (the grader cannot signal a process
        inside the sandbox's PID namespace directly)."""
        while True:
            try:
                data = os.read(self.control_fd, 1)
            except OSError:
                return
            if not data:
                return
            os.kill(os.getpid(), signal.SIGINT)

    def run(self) -> int:
        from seqcourse.grading.check import record_checks_with  # imported in the worker, inside the sandbox, once the job has set the process up

        self.shell = _make_shell()
        names = {}
        self.shell.compile.get_code_name = lambda raw, transformed, number: names["next"]
        self.names = names
        record_checks_with(self._check)
        monitor = Monitor(self.shell)
        signal.signal(signal.SIGINT, self._on_interrupt)
        threading.Thread(target=self._listen, daemon=True).start()
        self.audit.install()
        skip = set(self.spec["skip"])
        self.out.send(event="ready")
        for unit in self.spec["units"]:
            if unit["id"] in skip:
                continue
            self.out.send(event="start", unit=unit["id"])
            self.in_unit = True
            self.checks = []
            try:
                result = self._cell(unit) if unit["kind"] == "cell" else self._record(unit)
            except KeyboardInterrupt:
                result = {"interrupted": True}
            finally:
                self.in_unit = False
            result["tampered"] = monitor.findings(unit.get("protect", []))
            result["runtime"] = self.audit.take()
            if unit["kind"] == "cell":
                result["checks"] = self.checks
            self.out.send(event="end", unit=unit["id"], **result)
        self.out.send(event="done")
        return 0

    def _cell(self, unit: dict) -> dict:
        name = f"<cell {unit['label']}>"
        self.names["next"] = name
        if unit["origin"] == "student":
            self.audit.student_cell(name, unit["label"])
        capture = _Capture(self.spec["output_limit"])
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = capture
        try:
            result = self.shell.run_cell(unit["source"], store_history=True)
        finally:
            sys.stdout, sys.stderr = saved
        error = result.error_before_exec or result.error_in_exec
        return {"stdout": capture.text(), "error": _describe_error(error)}

    def _check(self, question_id, function):
        """What ``check(question_id, function)`` does in the sandbox: record the function's outputs
        on the question's published cases (the grader compares them, outside)."""
        question = self.spec["questions"].get(question_id) if isinstance(question_id, str) else None
        if question is None:
            raise ValueError(f"unknown question id {question_id!r}")
        outcomes, forbidden = self._calls(function, question["cases"], question)
        self.checks.append({"question": question_id, "outcomes": outcomes, "forbidden": forbidden})
        print(f"{question_id}: outputs of {len(outcomes)} cases recorded for grading")

    def _record(self, unit: dict) -> dict:
        question = self.spec["questions"][unit["question"]]
        try:
            function = eval(compile(unit["function"], "<grader>", "eval"), self.shell.user_ns)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # e.g. NameError: the student's cell did not define it
            message = f"could not get {unit['function']}: {_describe_error(exc)['ename']}"
            return {"outcomes": [{"error": message} for _ in unit["cases"]], "forbidden": []}
        outcomes, forbidden = self._calls(function, unit["cases"], question)
        return {"outcomes": outcomes, "forbidden": forbidden}

    def _calls(self, function, cases: list[list[dict]], question: dict) -> tuple[list[dict], list[str]]:
        """The function's outcome on each case (wire format), and what it used that the question
        forbids."""
        from .runtime_audit import Watch  # imported in the worker, inside the sandbox, once the job has set the process up

        used: set[str] = set()
        outcomes = []
        for case in cases:
            watch = Watch(tuple(question["forbids"]), self.course, own=self.own)
            outcomes.append(self._call(function, case, question, watch))
            used |= watch.used
        return outcomes, sorted(used)

    def _call(self, function, case: list[dict], question: dict, watch) -> dict:
        import torch

        wire = self.wire
        args = [wire.decode_input(value) for value in case]
        grad_mode = contextlib.nullcontext() if question["allow_autograd"] else torch.no_grad()
        try:
            with grad_mode, watch:
                value = function(*args)
        except KeyboardInterrupt:
            raise
        except NotImplementedError:
            return {"not_implemented": True}
        except BaseException as exc:  # what the student's function raises is a result
            try:
                message = wire.describe_exception(exc, question["allow_autograd"])
            except Exception:
                message = f"raised {type(exc).__name__}"
            return {"error": message, "memory": _is_memory_error(exc)}
        try:
            values, error = wire.read_outputs(value, tuple(question["outputs"]))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            return {"error": f"returned a value that could not be read ({type(exc).__name__})"}
        if error is not None:
            return {"error": error}
        return wire.outcome_to_wire(wire.StudentOutcome(values=values))


if __name__ == "__main__":
    main(*map(int, sys.argv[1:4]))
