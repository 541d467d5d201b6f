"""Run a submission's cells in a sandboxed process and read back what it reports.

The processes themselves are made by :mod:`seqcourse.grading.worker`: a :class:`ForkServer`
(one per grading run, started with a clean environment and ``OMP_NUM_THREADS=1``) forks a child
per submission, which becomes its own session and process group, caps its address space, and
runs in an empty temporary directory that is also its ``HOME`` and ``TMPDIR``.

:func:`run_units` drives one submission:

- the child announces each unit (a cell, or the recording of a question's outputs) before it runs
  it; a unit that runs longer than ``Limits.cell_timeout`` is interrupted (``SIGINT``, as a
  notebook's interrupt button does); if it has not ended ``Limits.grace`` seconds later, the whole
  process group is killed and a fresh child replays the cells, skipping that unit; a child that
  dies (killed by the kernel's OOM killer, a crash, ``os._exit``) is replayed the same way;
- ``Limits.time_limit`` bounds everything, replays included; past it the group is killed and
  what has not run scores nothing;
- what the child reports arrives as JSON lines on a pipe only it holds; a line without the job's
  random nonce, or out of order, is not believed and is recorded as forged.
Nothing from the child is ever unpickled or executed; its arrays are raw float64 bytes.
"""
from __future__ import annotations

import contextlib
import hmac
import itertools
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

MAX_LINE = 256 * 2**20
TAMPER_TOKEN = re.compile(r"^tampered:[A-Za-z0-9_.:\-]{1,160}$")


@dataclass(frozen=True)
class Limits:
    """Per submission: seconds per unit (a cell, or recording one question's outputs), seconds in
    all, the address-space cap in MB (Python, NumPy and torch take about 0.65 GB of it before any
    student code runs), the grace after an interrupt before the kill, the characters of output kept
    per cell, and the largest file the submission may write (MB)."""

    cell_timeout: float = 60.0
    time_limit: float = 600.0
    memory_mb: int = 2048
    grace: float = 5.0
    output_limit: int = 200_000
    file_size_mb: int = 64

    def __post_init__(self):
        for name in ("cell_timeout", "time_limit", "memory_mb", "grace", "output_limit", "file_size_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.memory_mb < 1024:
            raise ValueError(f"memory_mb must be at least 1024 (the interpreter with torch takes ~650 MB), got {self.memory_mb}")


@dataclass(frozen=True)
class Unit:
    """Something the child runs and reports on: ``kind`` "cell" or "record"; ``spec`` is what the
    worker needs (JSON-ready: the source, or the function expression and the encoded inputs)."""

    id: str
    kind: str
    spec: dict


@dataclass
class RunRecord:
    """What running one submission produced.

    results: unit id -> what the child reported when the unit ended (first report wins).
    timed_out: units that ran past the per-unit limit (interrupted, or killed after the grace).
    memory_killed: units during which the child was killed by SIGKILL we did not send (the OOM killer).
    crashed: (unit id or "startup"/"between-units", exit code) for children that died otherwise.
    time_limit_hit: the total wall-clock limit ended the run.
    forged: why lines on the result pipe were not believed (no nonce, malformed, out of order).
    """

    results: dict[str, dict] = field(default_factory=dict)
    timed_out: list[str] = field(default_factory=list)
    memory_killed: list[str] = field(default_factory=list)
    crashed: list[tuple[str, int | None]] = field(default_factory=list)
    time_limit_hit: bool = False
    forged: list[str] = field(default_factory=list)
    attempts: int = 0
    seconds: float = 0.0
    log_tail: str = ""


class ServerError(RuntimeError):
    """The fork server could not be started or stopped answering."""


def _server_env(home: Path) -> dict[str, str]:
    import seqcourse

    package_root = str(Path(seqcourse.__file__).resolve().parent.parent)
    python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "PYTHONPATH": python_path,
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "CUDA_VISIBLE_DEVICES": "",
        "SEQCOURSE_DEVICE": "cpu",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


class ForkServer:
    """The process that forks one sandboxed child per submission (see the module docstring).

    Thread-safe: several submissions may spawn and wait at once. If the server dies (a student
    can kill its parent process), the next :meth:`spawn` starts a new one."""

    def __init__(self, workdir: Path, preload: list[str] = (), start_timeout: float = 600.0):
        self.workdir, self.preload, self.start_timeout = Path(workdir), list(preload), start_timeout
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._jobs = itertools.count(1)
        self._forked: dict[int, int] = {}
        self._exits: dict[int, int] = {}
        self._generation = 0
        self.sock: socket.socket | None = None
        self.dead, self.closed = True, False
        self.failed_preload: list[str] = []
        self._start()

    def _start(self) -> None:
        self._generation += 1
        home = self.workdir / f"server-{self._generation}"
        home.mkdir(mode=0o700)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log_path = self.workdir / "server.log"
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "seqcourse.grading.worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=_server_env(home),
                cwd=home,
                start_new_session=True,
            )
        theirs.close()
        ours.settimeout(self.start_timeout)
        try:
            ours.send(json.dumps({"preload": self.preload}).encode())
            reply = json.loads(ours.recv(1 << 16) or b"null")
        except (OSError, ValueError):
            reply = None
        if not isinstance(reply, dict) or reply.get("op") != "ready":
            self.process.kill()
            self.process.wait()
            ours.close()
            tail = log_path.read_text(errors="replace")[-2000:]
            raise ServerError(f"the grading fork server did not start; its log ends:\n{tail}")
        ours.settimeout(None)
        self.failed_preload = reply.get("failed", [])
        with self._cond:
            self.sock, self.dead = ours, False
        threading.Thread(target=self._read, args=(ours, self._generation), daemon=True).start()

    def _read(self, sock: socket.socket, generation: int) -> None:
        while True:
            try:
                data = sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                break
            message = json.loads(data)
            with self._cond:
                if message["op"] == "forked":
                    self._forked[message["job"]] = message["pid"]
                elif message["op"] == "exited":
                    self._exits[message["pid"]] = message["code"]
                self._cond.notify_all()
        with self._cond:
            if generation == self._generation:
                self.dead = True
            self._cond.notify_all()

    def spawn(self, fds: list[int]) -> int:
        """Fork a child that receives ``fds`` (job spec, result pipe, log); return its pid."""
        with self._send_lock:
            if self.closed:
                raise ServerError("the grading fork server has been closed")
            if self.dead:
                self._stop()
                self._start()
            job, generation = next(self._jobs), self._generation
            try:
                socket.send_fds(self.sock, [json.dumps({"op": "fork", "job": job}).encode()], fds)
            except OSError as error:
                raise ServerError(f"the grading fork server stopped answering ({error})") from None
        with self._cond:
            self._cond.wait_for(lambda: job in self._forked or self.dead or self._generation != generation, 60)
            pid = self._forked.pop(job, None)
        if pid is None:
            raise ServerError("the grading fork server did not start the submission's process")
        return pid

    def exit_code(self, pid: int, timeout: float) -> int | None:
        """The child's exit code (negative: killed by that signal), waiting up to ``timeout``;
        None if the server has not reported it."""
        with self._cond:
            self._cond.wait_for(lambda: pid in self._exits or self.dead, timeout)
            return self._exits.pop(pid, None)

    def _stop(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.send(json.dumps({"op": "quit"}).encode())
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        """Stop the server; it kills every child still running. Later spawns raise ServerError."""
        with self._send_lock:
            self.closed = True
            self._stop()

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _signal(pid: int, sig: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            try:
                os.killpg(pid, sig)
                return
            except ProcessLookupError:
                pass  # not yet a group leader: signal the process itself
        os.kill(pid, sig)


def _remove_tree(path: Path) -> None:
    """Delete a sandbox directory, whatever permissions the student's code left on it."""
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
    shutil.rmtree(path, ignore_errors=True)


def _spec_fd(workdir: Path, spec: dict) -> int:
    """The job spec in an unlinked file, opened for reading: no path to it exists."""
    fd, path = tempfile.mkstemp(dir=workdir, prefix="job-")
    os.unlink(path)
    data = json.dumps(spec).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _valid_end(message: dict) -> bool:
    error = message.get("error")
    return (
        isinstance(message.get("stdout", ""), str)
        and (error is None or isinstance(error, dict) and isinstance(error.get("ename"), str) and isinstance(error.get("evalue"), str))
        and (message.get("outcomes") is None or isinstance(message["outcomes"], list))
        and isinstance(message.get("tampered", []), list)
        and all(isinstance(t, str) for t in message.get("tampered", []))
    )


class _Attempt:
    """One child: spawn it, follow its units, enforce the per-unit and total limits."""

    def __init__(self, server: ForkServer, units: list[Unit], skip: set[str], limits: Limits, deadline: float, workdir: Path, sandboxes: Path | None, record: RunRecord):
        self.server, self.limits, self.deadline, self.workdir, self.record = server, limits, deadline, workdir, record
        self.sandboxes = sandboxes
        self.units = units
        self.order = [unit.id for unit in units if unit.id not in skip]
        self.skip = skip
        self.nonce = secrets.token_hex(16)
        self.exited = False  # the server has reported the child's exit

    def run(self) -> tuple[bool, str | None]:
        """(stop, unit to skip on the next attempt)."""
        sandbox = Path(tempfile.mkdtemp(prefix="seqcourse-sandbox-", dir=self.sandboxes))
        env = {"HOME": str(sandbox), "TMPDIR": str(sandbox), "PWD": str(sandbox)}
        env.update(IPYTHONDIR=str(sandbox / ".ipython"), MPLCONFIGDIR=str(sandbox / ".matplotlib"))
        spec = {
            "nonce": self.nonce,
            "units": [{"id": unit.id, "kind": unit.kind, **unit.spec} for unit in self.units],
            "skip": sorted(self.skip),
            "memory_bytes": self.limits.memory_mb * 2**20,
            "file_size_bytes": self.limits.file_size_mb * 2**20,
            "output_limit": self.limits.output_limit,
            "cwd": str(sandbox),
            "env": env,
        }
        spec_fd = _spec_fd(self.workdir, spec)
        read_fd, write_fd = os.pipe()
        log_path = self.workdir / f"log-{self.nonce[:12]}.txt"
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            pid = self.server.spawn([spec_fd, write_fd, log_fd])
        except ServerError:
            os.close(read_fd)
            _remove_tree(sandbox)
            raise
        finally:
            for fd in (spec_fd, write_fd, log_fd):
                os.close(fd)
        finished = False
        try:
            stop, skip, finished = self._follow(pid, read_fd)
            return stop, skip
        finally:
            if not self.exited:  # kill what is left, and let the server report (and reap) the child
                if not finished:
                    _signal(pid, signal.SIGKILL, group=True)
                if self.server.exit_code(pid, 5) is None:
                    _signal(pid, signal.SIGKILL, group=True)
            os.close(read_fd)
            with contextlib.suppress(OSError):
                self.record.log_tail = log_path.read_text(errors="replace")[-2000:]
                log_path.unlink()
            _remove_tree(sandbox)

    def _follow(self, pid: int, read_fd: int) -> tuple[bool, str | None, bool]:
        """Read the child's reports until it finishes, dies, or a limit is hit:
        (stop, unit to skip next time, finished normally)."""
        position, current, unit_deadline, kill_at, done = 0, None, None, None, False
        pending = bytearray()  # the start of a line whose end has not arrived yet
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                self.record.time_limit_hit = True
                return True, None, False
            if current is not None and kill_at is None and now >= unit_deadline:
                _signal(pid, signal.SIGINT, group=False)
                self.record.timed_out.append(current)
                kill_at = now + self.limits.grace
            if kill_at is not None and now >= kill_at:
                return False, current, False
            wake = min(self.deadline, now + 1.0, kill_at or unit_deadline or self.deadline)
            readable, _, _ = select.select([read_fd], [], [], max(0.0, wake - now))
            if not readable:
                continue
            chunk = os.read(read_fd, 1 << 20)
            if not chunk:
                break
            pending += chunk
            if len(pending) > MAX_LINE:
                self.record.forged.append("a line longer than 256 MB on the result pipe")
                return True, None, False
            if b"\n" not in chunk:
                continue
            *lines, rest = bytes(pending).split(b"\n")
            pending = bytearray(rest)
            for line in lines:
                message = self._parse(line)
                if message is None:
                    continue
                event, unit = message.get("event"), message.get("unit")
                if event == "start" and current is None and position < len(self.order) and unit == self.order[position]:
                    position, current = position + 1, unit
                    unit_deadline, kill_at = time.monotonic() + self.limits.cell_timeout, None
                elif event == "end" and unit == current and current is not None and _valid_end(message):
                    self.record.results.setdefault(unit, message)
                    current, unit_deadline, kill_at = None, None, None
                elif event == "done" and current is None and position == len(self.order):
                    done = True
                elif event != "ready":
                    self.record.forged.append(f"an out-of-order or malformed {str(event)[:20]!r} report")
        if done:
            return True, None, True
        code = self.server.exit_code(pid, 5)
        self.exited = code is not None
        if current is None:
            self.record.crashed.append(("startup" if position == 0 else "between-units", code))
            return True, None, False
        if code == -signal.SIGKILL:
            self.record.memory_killed.append(current)
        else:
            self.record.crashed.append((current, code))
        return False, current, False

    def _parse(self, line: bytes) -> dict | None:
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict) or not hmac.compare_digest(str(message.get("nonce", "")).encode(), self.nonce.encode()):
            self.record.forged.append("a report without the job's nonce")
            return None
        tampered = message.get("tampered")
        message["tampered"] = [t for t in tampered if isinstance(t, str) and TAMPER_TOKEN.match(t)] if isinstance(tampered, list) else []
        return message


def run_units(server: ForkServer, units: list[Unit], limits: Limits, workdir: Path, sandboxes: Path | None = None) -> RunRecord:
    """Run ``units`` in sandboxed children until all have run or been skipped, or time is up.

    workdir: a private folder for the job spec and the child's log (never shown to the child).
    sandboxes: where the child's empty working folder is made (default: the system's temp folder);
    it is deleted after each attempt."""
    record = RunRecord()
    start = time.monotonic()
    deadline = start + limits.time_limit
    skip: set[str] = set()
    while True:
        record.attempts += 1
        recorded = {unit.id for unit in units if unit.kind == "record" and unit.id in record.results}
        stop, bad = _Attempt(server, units, skip | recorded, limits, deadline, Path(workdir), sandboxes, record).run()
        if stop or bad is None or bad in skip:
            break
        skip.add(bad)
    record.seconds = time.monotonic() - start
    return record
