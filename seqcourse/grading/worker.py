"""The grading code that runs inside the sandbox (see :mod:`seqcourse.grading.sandbox` for the side
that starts it, watches it and reads what it reports).

Two roles, one module:

- the **fork server** (``python -m seqcourse.grading.worker FD``): started once per grading run
  with a clean environment; it imports NumPy, torch, IPython and seqcourse (about 5 s) and then
  forks one child per submission on request, so no submission pays for those imports again. It
  reaps its children and, before reaping, kills each child's whole process group.
- the **child** (one per submission and attempt): it becomes its own session and process group,
  closes every file descriptor but the three it was given, caps its address space
  (``RLIMIT_AS``), core files and file sizes, moves into an empty directory that is also its
  ``HOME`` and ``TMPDIR``, reads its job (cells to run, functions to record) from a file
  descriptor, and runs the cells in an IPython shell, as a Jupyter kernel would.

What the child reports goes over an inherited pipe as JSON lines, each carrying a random nonce
that the grader sent with the job; nothing is written to a file the grader reads back. After each
graded cell the child itself calls the student's function on the inputs the grader sent (not
through ``run_cell``, so no input transformer can rewrite that call) and reports the raw outputs
as float64 bytes. It never receives the expected outputs. A :class:`Monitor` compares, after every
cell, the attributes of NumPy, torch, builtins, seqcourse's grading modules and the shell's input
transformers with a snapshot taken before any student code ran, and reports what changed.

Everything here runs in the same process as the student's code, so it is tamper-evident rather
than tamper-proof: the grader judges the outputs outside this process, and the static audit
(:mod:`seqcourse.grading.audit`) flags code that reaches for the means to interfere.
"""
from __future__ import annotations

import base64
import contextlib
import importlib
import io
import json
import os
import resource
import select
import signal
import socket
import sys
import tempfile
import traceback

MAX_ENTRIES = 10_000_000  # an output with more float64 entries than this is refused (80 MB)
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
    "seqcourse.grading.registry",
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
    "seqcourse.grading.registry",
)
IGNORED_KEYS = frozenset({"_", "__", "___", "__warningregistry__"})


# ---- the fork server ------------------------------------------------------------------------


def _send(sock: socket.socket, message: dict) -> None:
    sock.send(json.dumps(message).encode())


def fork_server(control_fd: int) -> None:
    """Serve fork requests on the SOCK_SEQPACKET socket ``control_fd`` until it closes.

    Messages (JSON): in: ``{"preload": [...]}`` first, then ``{"op": "fork", "job": k}`` with three
    file descriptors (job spec, result pipe, log) attached, or ``{"op": "quit"}``; out:
    ``{"op": "ready", "failed": [...]}``, ``{"op": "forked", "job": k, "pid": p}``,
    ``{"op": "exited", "pid": p, "code": c}`` (``c`` as ``subprocess`` reports it: negative for a
    signal)."""
    sock = socket.socket(fileno=control_fd)
    hello = json.loads(sock.recv(1 << 16))
    failed = []
    for name in BASE_PRELOAD + tuple(hello.get("preload", ())):
        try:
            importlib.import_module(name)
        except Exception:  # a module the notebook imports but this environment lacks: the cell will say so
            failed.append(name)
    from .registry import questions

    questions()  # import every chapter's question module once, here
    _send(sock, {"op": "ready", "failed": failed})
    children: dict[int, int] = {}
    while True:
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            try:
                data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 8)
            except OSError:
                data, fds = b"", []
            if not data:
                break
            message = json.loads(data)
            if message.get("op") == "quit":
                break
            pid = os.fork()
            if pid == 0:
                _child(sock, fds)  # never returns
            for fd in fds:
                os.close(fd)
            children[pid] = message["job"]
            _send(sock, {"op": "forked", "job": message["job"], "pid": pid})
        _reap(sock, children)
    for pid in list(children):
        _kill_group(pid)
    for pid in list(children):
        os.waitpid(pid, 0)
    os._exit(0)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _reap(sock: socket.socket, children: dict[int, int]) -> None:
    """Report every child that has exited, after killing what is left of its process group.

    The child is left a zombie (``WNOWAIT``) while its group is killed, so its pid, which is also
    the group id, cannot have been reused by another process in between."""
    while children:
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is None:
            return
        _kill_group(info.si_pid)
        _, status = os.waitpid(info.si_pid, 0)
        if children.pop(info.si_pid, None) is not None:
            with contextlib.suppress(OSError):
                _send(sock, {"op": "exited", "pid": info.si_pid, "code": os.waitstatus_to_exitcode(status)})


def _child(sock: socket.socket, fds: list[int]) -> None:
    code = EXIT_INTERNAL
    try:
        os.setsid()
        sock.close()
        spec_fd, result_fd, log_fd = fds
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        keep = {0, 1, 2, spec_fd, result_fd}
        for fd in [int(name) for name in os.listdir("/proc/self/fd")]:
            if fd not in keep:
                with contextlib.suppress(OSError):
                    os.close(fd)
        with os.fdopen(spec_fd, "rb") as stream:
            spec = json.loads(stream.read())
        cap = int(spec["memory_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        size = int(spec["file_size_bytes"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the size cap fails instead of killing
        _not_dumpable()
        os.chdir(spec["cwd"])
        os.environ.update(spec["env"])
        tempfile.tempdir = None
        code = Driver(spec, result_fd).run()
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _not_dumpable() -> None:
    """``prctl(PR_SET_DUMPABLE, 0)``: other processes of the same user (another submission's
    stray children) can then neither read this one's memory nor open its file descriptors
    through ``/proc``. Best effort: where prctl is missing, nothing changes."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4


# ---- the child: run the cells, record the outputs -------------------------------------------


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


def _encode_array(array) -> dict:
    import numpy as np

    array = np.ascontiguousarray(array, dtype="<f8")
    return {"shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}


def _decode_input(encoded: dict):
    import numpy as np
    import torch

    if "npy" not in encoded:
        return encoded["value"]
    array = np.load(io.BytesIO(base64.b64decode(encoded["npy"])), allow_pickle=False)
    tensor = torch.from_numpy(array.copy())
    return tensor.requires_grad_() if encoded.get("requires_grad") else tensor


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

    def __init__(self, spec: dict, result_fd: int):
        import torch

        torch.set_num_threads(1)
        self.spec = spec
        self.out = Channel(result_fd, spec["nonce"])
        self.in_unit = False

    def _on_interrupt(self, signum, frame):
        if self.in_unit:
            raise KeyboardInterrupt

    def run(self) -> int:
        from .check import _describe_exception, _read_outputs
        from .registry import get_question

        self.read_outputs, self.describe, self.get_question = _read_outputs, _describe_exception, get_question
        self.shell = _make_shell()
        monitor = Monitor(self.shell)
        signal.signal(signal.SIGINT, self._on_interrupt)
        skip = set(self.spec["skip"])
        self.out.send(event="ready")
        for unit in self.spec["units"]:
            if unit["id"] in skip:
                continue
            self.out.send(event="start", unit=unit["id"])
            self.in_unit = True
            try:
                result = self._cell(unit) if unit["kind"] == "cell" else self._record(unit)
            except KeyboardInterrupt:
                result = {"interrupted": True}
            finally:
                self.in_unit = False
            result["tampered"] = monitor.findings(unit.get("protect", []))
            self.out.send(event="end", unit=unit["id"], **result)
        self.out.send(event="done")
        return 0

    def _cell(self, unit: dict) -> dict:
        capture = _Capture(self.spec["output_limit"])
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = capture
        try:
            result = self.shell.run_cell(unit["source"], store_history=True)
        finally:
            sys.stdout, sys.stderr = saved
        error = result.error_before_exec or result.error_in_exec
        return {"stdout": capture.text(), "error": _describe_error(error)}

    def _record(self, unit: dict) -> dict:
        try:
            function = eval(compile(unit["function"], "<grader>", "eval"), self.shell.user_ns)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # e.g. NameError: the student's cell did not define it
            message = f"could not get {unit['function']}: {_describe_error(exc)['ename']}"
            return {"outcomes": [{"error": message} for _ in unit["cases"]]}
        return {"outcomes": [self._call(function, case, unit) for case in unit["cases"]]}

    def _call(self, function, case: list[dict], unit: dict) -> dict:
        import torch

        question = self.get_question(unit["question"])
        args = [_decode_input(value) for value in case]
        grad_mode = contextlib.nullcontext() if unit["allow_autograd"] else torch.no_grad()
        try:
            with grad_mode:
                value = function(*args)
        except KeyboardInterrupt:
            raise
        except NotImplementedError:
            return {"not_implemented": True}
        except BaseException as exc:  # what the student's function raises is a result
            try:
                message = self.describe(exc, question)
            except Exception:
                message = f"raised {type(exc).__name__}"
            return {"error": message, "memory": _is_memory_error(exc)}
        try:
            values, error = self.read_outputs(value, tuple(unit["outputs"]))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            return {"error": f"returned a value that could not be read ({type(exc).__name__})"}
        if error is not None:
            return {"error": error}
        too_big = [name for name, array in values.items() if array.size > MAX_ENTRIES]
        if too_big:
            return {"error": f"{too_big[0]}: more than {MAX_ENTRIES} entries"}
        return {"values": {name: _encode_array(array) for name, array in values.items()}}


if __name__ == "__main__":
    fork_server(int(sys.argv[1]))
