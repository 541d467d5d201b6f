"""What a submission's code does at run time, seen from inside its own process.

Two watchers, both installed by :mod:`seqcourse.autograde.worker` before any student code runs:

- :class:`RuntimeAudit`, a ``sys.addaudithook`` hook (it cannot be removed once added). It keeps
  the events raised while a frame of a student's cell is on the stack, each as a finding
  ``{"rule", "cell", "line", "detail"}`` naming the student's cell (its grade_id) and line:

  ==================  ==========================================================================
  rule                events
  ==================  ==========================================================================
  write-outside       a file opened for writing outside the submission's home and temp folders
  reads-notebook      any ``.ipynb`` file opened (the solution notebook, a classmate's)
  reads-course        a source file of the course's package opened other than by an import
  reads-process       a file under ``/proc`` opened (the grader's command line, its memory)
  course-import       an import of ``seqcourse`` beyond ``check`` (its models, the question
                      registry with the reference implementations), by an ``import`` statement
                      or through ``importlib`` (a finder first on ``sys.meta_path`` sees those)
  exec                ``exec``, ``eval`` or ``compile`` called by the student's code itself
  process             subprocesses, ``fork``, ``exec*``, ``kill``, ``os.system``
  socket              creating, connecting or binding a socket
  ctypes              loading a library or reading memory through ``ctypes``
  introspection       frames (``sys._getframe``), ``gc``'s object lists, ``sys.setprofile``/
                      ``settrace``, another audit hook
  ==================  ==========================================================================

  At most :data:`MAX_PER_LINE` findings are kept per rule, cell and line. Reading the
  interpreter's own libraries is normal (imports, fonts, data files) and not kept.
  ``exec``/``compile`` and introspection count only when the student's code calls them directly:
  a ``dataclass`` or ``namedtuple`` compiles code too, from its library's frame.
- :class:`Watch`, a ``sys.setprofile`` hook around each call of the student's graded function,
  which notes what the question forbids (:attr:`seqcourse.grading.registry.Question.forbids`):
  a call into the course's package (``seqcourse``), into ``torch.nn``'s modules (``torch.nn``),
  or autograd switched back on or called (``autograd``). Switching the watch off is itself noted
  (``unwatched``).

Both live in the student's process, so they are evidence, not walls: the walls are the sandbox
(:mod:`seqcourse.autograde.sandbox`); these say who did what, with cell and line.
"""
from __future__ import annotations

import os
import sys

ALLOWED_COURSE_IMPORTS = frozenset({"seqcourse", "seqcourse.grading", "seqcourse.grading.check", "seqcourse.grading.wire"})
PROCESS_EVENTS = frozenset(
    {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill",
     "os.killpg", "signal.pthread_kill", "pty.spawn"}
)
INTROSPECTION_EVENTS = frozenset(
    {"sys._getframe", "sys._current_frames", "gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.setprofile",
     "sys.settrace", "sys.addaudithook", "object.__getattr__", "function.__new__", "code.__new__"}
)
DIRECT_EVENTS = frozenset({"exec", "compile"}) | INTROSPECTION_EVENTS
MAX_PER_LINE = 5
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class RuntimeAudit:
    """The audit hook. ``course``: the folder of the ``seqcourse`` package; ``private``: the
    folders the submission may write to (its home and temp folders)."""

    def __init__(self, course: str, private: tuple[str, ...]):
        self.course = os.path.realpath(course) + os.sep
        self.private = tuple(os.path.realpath(p) + os.sep for p in private)
        self.cells: dict[str, str] = {}  # code file name of a student cell -> its label
        self.found: dict[tuple, dict] = {}
        self.taken: set[tuple] = set()
        self.busy = False

    def student_cell(self, filename: str, label: str) -> None:
        """Code compiled under ``filename`` is the student's cell ``label``."""
        self.cells[filename] = label

    def install(self) -> None:
        sys.addaudithook(self._hook)
        sys.meta_path.insert(0, _ImportWatch(self))

    def take(self) -> list[dict]:
        """The findings since the last call."""
        new = [finding for key, finding in self.found.items() if key not in self.taken]
        self.taken.update(self.found)
        return new

    def _student_frame(self, direct: bool, depth: int):
        """(label, line) of the innermost student-cell frame on the stack from ``depth`` levels up
        (``direct``: only when it is that frame itself), or None."""
        frame = sys._getframe(depth)
        while frame is not None:
            label = self.cells.get(frame.f_code.co_filename)
            if label is not None:
                return label, frame.f_lineno
            if direct:
                return None
            frame = frame.f_back
        return None

    def _hook(self, event: str, args: tuple) -> None:
        if self.busy or not self.cells:
            return
        rule = detail = None
        if event == "open":
            rule, detail = self._open(args)
        elif event == "import":
            module = str(args[0])
            if module.startswith("seqcourse.") and module not in ALLOWED_COURSE_IMPORTS:
                rule, detail = "course-import", module
        elif event in ("exec", "compile"):
            rule, detail = "exec", event
        elif event in PROCESS_EVENTS:
            rule, detail = "process", event
        elif event.startswith("socket.") and event != "socket.getaddrinfo":
            rule, detail = "socket", event
        elif event.startswith("ctypes."):
            rule, detail = "ctypes", event
        elif event in INTROSPECTION_EVENTS:
            rule, detail = "introspection", event
        if rule is None:
            return
        self.note(rule, detail, direct=event in DIRECT_EVENTS, depth=2)

    def note(self, rule: str, detail: str, direct: bool, depth: int) -> None:
        """Keep a finding if a student cell's frame is on the stack (``direct``: is the frame
        ``depth`` levels above this call)."""
        self.busy = True
        try:
            where = self._student_frame(direct, depth + 1)
            same_line = sum(1 for key in self.found if key[:3] == (rule, *where)) if where else 0
            if where is not None and same_line < MAX_PER_LINE:
                key = (rule, *where, detail)
                self.found.setdefault(key, {"rule": rule, "cell": where[0], "line": where[1], "detail": detail[:300]})
        finally:
            self.busy = False

    def _open(self, args: tuple) -> tuple[str | None, str | None]:
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return None, None  # a file descriptor
        full = os.path.realpath(path)
        if (full + os.sep).startswith(self.private) or full in ("/dev/null", "/dev/urandom"):
            return None, None
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & WRITE_FLAGS)
        if writing:
            return "write-outside", full
        if full.endswith(".ipynb"):
            return "reads-notebook", full
        if full.startswith("/proc/"):
            return "reads-process", full
        if full.startswith(self.course) and not self._importing():
            return "reads-course", full
        return None, None

    @staticmethod
    def _importing() -> bool:
        """Whether the import system opened the file (the frame below the hook is importlib's)."""
        frame = sys._getframe(3)
        return frame is not None and frame.f_code.co_filename.startswith("<frozen importlib")


class _ImportWatch:
    """A finder first on ``sys.meta_path`` that finds nothing: it tells the audit about every
    ``seqcourse`` module the student's code tries to import (``importlib.import_module`` does not
    raise the ``import`` audit event; this sees it)."""

    def __init__(self, audit: RuntimeAudit):
        self.audit = audit

    def find_spec(self, name, path=None, target=None):
        if name.startswith("seqcourse.") and name not in ALLOWED_COURSE_IMPORTS and not self.audit.busy:
            self.audit.note("course-import", name, direct=False, depth=2)
        return None


class Watch:
    """A ``sys.setprofile`` hook for one call of a student's function: which of ``forbidden``
    (``"seqcourse"``, ``"torch.nn"``, ``"autograd"``) it used. ``course``: the package's folder;
    ``own``: files of the grader's own code in that folder (not counted)."""

    def __init__(self, forbidden: tuple[str, ...], course: str, *, own: tuple[str, ...]):
        import torch

        self.forbidden = forbidden
        self.used: set[str] = set()
        torch_root = os.path.dirname(torch.__file__) + os.sep
        self.course = os.path.realpath(course) + os.sep
        self.own = frozenset(os.path.realpath(p) for p in own)
        self.nn = torch_root + os.path.join("nn", "modules") + os.sep
        self.autograd = tuple(torch_root + p + os.sep for p in ("autograd", "_functorch", "func"))
        self.grad_mode = torch_root + os.path.join("autograd", "grad_mode.py")
        self.is_grad_enabled = torch.is_grad_enabled
        self.previous = None
        self.hook = self._profile  # one bound method, to tell it from another hook later

    def __enter__(self) -> Watch:
        self.previous = sys.getprofile()
        sys.setprofile(self.hook)
        return self

    def __exit__(self, *exc) -> None:
        if sys.getprofile() is not self.hook:
            self.used.add("unwatched")
        sys.setprofile(self.previous)

    def _profile(self, frame, event, arg) -> None:
        if "autograd" in self.forbidden and self.is_grad_enabled():
            self.used.add("autograd")
        if event != "call":
            return
        filename = frame.f_code.co_filename
        if "seqcourse" in self.forbidden and filename.startswith(self.course) and filename not in self.own:
            self.used.add("seqcourse")
        elif "torch.nn" in self.forbidden and filename.startswith(self.nn):
            self.used.add("torch.nn")
        elif "autograd" in self.forbidden and filename.startswith(self.autograd) and filename != self.grad_mode:
            self.used.add("autograd")
