"""Run a submission's cells in a sandbox and read back what it reports.

Each attempt at a submission is one fresh process, ``python -I -B`` (isolated, writing no bytecode) running
:mod:`seqcourse.autograde.worker`, started by a :class:`Launcher`:

- **sandboxed** (the default; needs bubblewrap, Debian's ``bubblewrap`` package): in its own user,
  PID, mount, network, IPC and UTS namespaces, as uid 65534; the system, the virtual environment
  and the ``seqcourse`` package bound read-only (the question registry's folder, with the
  reference implementations, replaced by an empty one), nothing else of the machine: no course
  folder, no solution notebook, no other submission, no grader working folder; a private ``/tmp``
  and home folder on size-capped tmpfs; a fresh ``/proc`` that shows only the sandbox's own
  processes; no network. When the worker exits or is killed, the PID namespace ends and every
  process it started (``setsid`` or not) dies with it; nothing it wrote survives.
- **unsandboxed** (``--no-sandbox``): the same worker as a child process in its own session, in
  an empty temporary folder, under the same resource limits; it can see whatever the grader's
  user can see, which is why every row is then flagged ``unsandboxed``.

Both get rlimits: address space (``Limits.memory_mb``), processes (``Limits.processes``), file size
(``Limits.file_size_mb``), CPU seconds (``Limits.time_limit`` plus a margin) and no core files.
The kernel does not apply ``RLIMIT_NPROC`` to processes of the host's root, and a sandbox that root
starts is root's outside its user namespace; so when the grader runs as root it also puts each
worker in a ``pids`` cgroup of its own (``pids.max = Limits.processes``), where the machine has
one it can write (cgroup v1's ``pids`` hierarchy, or cgroup v2 with the ``pids`` controller);
whatever is left in that cgroup when the worker ends is killed, so even unsandboxed, a child that
left the worker's session does not outlive it.

:func:`run_units` drives one submission:

- the worker announces each unit (a cell, or the recording of a question's outputs) before it runs
  it; a unit that runs longer than ``Limits.cell_timeout`` is interrupted (a byte on the control
  pipe, which the worker turns into ``SIGINT``, as a notebook's interrupt button does); if it has
  not ended ``Limits.grace`` seconds later, the sandbox is killed and a fresh one replays the cells,
  skipping that unit; a worker that dies (out of memory, a crash, ``os._exit``) is replayed the
  same way;
- ``Limits.time_limit`` bounds everything, replays included; past it the sandbox is killed and
  what has not run scores nothing;
- a worker that has exited is not waited for any longer, even if something still holds the
  result pipe open;
- what the worker reports arrives as JSON lines (:mod:`seqcourse.grading.wire`) on a pipe only it
  holds; a line without the job's random nonce, or out of order, is not believed and is recorded
  as forged. Nothing from the sandbox is ever unpickled or executed; its arrays are raw float64 bytes.
"""
from __future__ import annotations

import contextlib
import functools
import hmac
import json
import os
import re
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import seqcourse

MAX_LINE = 256 * 2**20
TAMPER_TOKEN = re.compile(r"^tampered:[A-Za-z0-9_.:\-]{1,160}$")
SANDBOX_UID = 65534
SANDBOX_HOME = "/home/student"
SANDBOX_COURSE = "/course"
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: sudo apt-get install -y bubblewrap)"
BOOT = "import sys; sys.path.insert(0, {root!r}); from seqcourse.autograde.worker import main; main(*map(int, sys.argv[1:4]))"


@dataclass(frozen=True)
class Limits:
    """Per submission: seconds per unit (a cell, or recording one question's outputs), seconds in
    all, the address-space cap in MB (Python, NumPy and torch take about 0.65 GB of it before any
    student code runs), the grace after an interrupt before the kill, the characters of output kept
    per cell, the largest file the submission may write (MB), the size of its home and of its
    ``/tmp`` (MB each, sandboxed only), and how many processes it may run at once."""

    cell_timeout: float = 60.0
    time_limit: float = 600.0
    memory_mb: int = 2048
    grace: float = 5.0
    output_limit: int = 200_000
    file_size_mb: int = 64
    disk_mb: int = 64
    processes: int = 64

    def __post_init__(self):
        for name in ("cell_timeout", "time_limit", "memory_mb", "grace", "output_limit", "file_size_mb", "disk_mb", "processes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.memory_mb < 1024:
            raise ValueError(f"memory_mb must be at least 1024 (the interpreter with torch takes ~650 MB), got {self.memory_mb}")


@dataclass(frozen=True)
class Unit:
    """Something the worker runs and reports on: ``kind`` "cell" or "record"; ``spec`` is what the
    worker needs (JSON-ready: the source, label and origin of a cell, or the question and the
    function expression and the encoded inputs of a recording)."""

    id: str
    kind: str
    spec: dict


@dataclass
class RunRecord:
    """What running one submission produced.

    results: unit id -> what the worker reported when the unit ended (first report wins).
    timed_out: units that ran past the per-unit limit (interrupted, or killed after the grace).
    memory_killed: units during which the worker was killed by SIGKILL we did not send (the OOM killer).
    crashed: (unit id or "startup"/"between-units", exit code) for workers that died otherwise.
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


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create its namespaces here; the message says what to do."""


@functools.lru_cache(maxsize=1)
def check_sandbox() -> str:
    """The path of ``bwrap`` after a trial run of a sandbox; raises :class:`SandboxUnavailable`
    saying why not (not installed, or user namespaces switched off) and what to do."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}, or pass --no-sandbox to grade "
                                 "without isolation (every row is then flagged unsandboxed)")
    trial = subprocess.run([bwrap, "--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
                            "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"],
                           capture_output=True, text=True, timeout=60)
    if trial.returncode != 0:
        raise SandboxUnavailable(f"bubblewrap cannot create a sandbox here ({trial.stderr.strip() or trial.returncode}); "
                                 "user namespaces may be switched off (sysctl kernel.unprivileged_userns_clone=1, "
                                 "user.max_user_namespaces > 0) or blocked by a container's seccomp profile; "
                                 "or pass --no-sandbox to grade without isolation (every row is then flagged unsandboxed)")
    return bwrap


def _package() -> Path:
    """The folder of the ``seqcourse`` package being run."""
    return Path(seqcourse.__file__).resolve().parent


def not_dumpable() -> None:
    """``prctl(PR_SET_DUMPABLE, 0)`` on this process: no other process of the same user can read
    its memory (``/proc/PID/mem``) or open its file descriptors. Best effort: where prctl is
    missing, nothing changes."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4


class LauncherClosed(OSError):
    """The launcher was closed (grading is stopping): no new worker starts."""


class Launcher:
    """Starts one worker per attempt, sandboxed (bubblewrap) or not; see the module docstring.
    Thread-safe. Closing it (or leaving its ``with`` block) kills every worker still running and
    refuses new ones."""

    def __init__(self, sandboxed: bool = True):
        self.sandboxed = sandboxed
        self.bwrap = check_sandbox() if sandboxed else None
        self.running: set[subprocess.Popen] = set()
        self.cgroups: dict[int, Path] = {}
        self.closed = False
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            running = list(self.running)
        for process in running:
            self.finished(process)

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def finished(self, process: subprocess.Popen) -> None:
        """Kill what is left of ``process``'s sandbox (or session) and forget it."""
        kill(process, self.sandboxed)
        with self._lock:
            self.running.discard(process)
        group = self.cgroups.pop(process.pid, None)
        if group is not None:
            _remove_cgroup(group)

    def places(self, scratch: Path | None) -> tuple[str, str]:
        """(home, tmp) as the worker sees them: fixed paths inside the sandbox, ``scratch`` outside."""
        return (SANDBOX_HOME, "/tmp") if self.sandboxed else (str(scratch), str(scratch))

    def env(self, home: str, tmp: str) -> dict[str, str]:
        venv_bin = str(Path(sys.executable).parent)
        return {
            "PATH": os.pathsep.join((venv_bin, "/usr/local/bin", "/usr/bin", "/bin")),
            "HOME": home,
            "TMPDIR": tmp,
            "PWD": home,
            "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": os.path.join(tmp, "matplotlib"),
            "IPYTHONDIR": os.path.join(home, ".ipython"),
            "JPY_PARENT_PID": "1",
            "CUDA_VISIBLE_DEVICES": "",
            "SEQCOURSE_DEVICE": "cpu",
            "PYTHONHASHSEED": "0",
        }

    def command(self, fds: tuple[int, int, int], disk_mb: int) -> list[str]:
        package = _package()
        root = SANDBOX_COURSE if self.sandboxed else str(package.parent)
        python = [sys.executable, "-I", "-B", "-c", BOOT.format(root=root), *map(str, fds)]
        if not self.sandboxed:
            return python
        return [self.bwrap, *self._bwrap_args(package, disk_mb), "--", *python]

    def _bwrap_args(self, package: Path, disk_mb: int) -> list[str]:
        args = ["--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
                "--hostname", "jupyter", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv"]
        mounted: list[str] = []
        for path in ("/usr", "/etc"):
            args += ["--ro-bind", path, path]
            mounted.append(path)
        for path in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
                mounted.append(path)
        # the private folders first, so that a virtual environment under /tmp is bound over them
        args += ["--size", str(disk_mb * 2**20), "--tmpfs", "/tmp"]
        args += ["--size", str(disk_mb * 2**20), "--tmpfs", SANDBOX_HOME]
        python_dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(sys.executable).resolve().parent.parent)}
        for path in sorted(python_dirs):
            if not any(path == m or path.startswith(m + "/") for m in mounted):
                args += ["--ro-bind", path, path]
                mounted.append(path)
        args += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
        args += ["--proc", "/proc", "--dev", "/dev"]
        course = f"{SANDBOX_COURSE}/seqcourse"
        args += ["--ro-bind", str(package), course]
        # The question registry's chapters hold the reference implementations: not in the sandbox.
        for hidden in {f"{course}/grading/questions", str(package / "grading" / "questions")}:
            if hidden == f"{course}/grading/questions" or any(hidden.startswith(m + "/") for m in mounted):
                args += ["--tmpfs", hidden, "--remount-ro", hidden]
        args += ["--chdir", SANDBOX_COURSE]
        return args

    def start(self, fds: tuple[int, int, int], log_fd: int, cwd: Path, limits: Limits) -> subprocess.Popen:
        """Start a worker that reads its job from ``fds[0]``, reports on ``fds[1]`` and listens
        for interrupts on ``fds[2]``; its stdout and stderr go to ``log_fd``."""
        home, tmp = self.places(cwd)
        env = self.env(home, tmp) if not self.sandboxed else {"PATH": os.defpath}
        rlimits = _rlimits(limits)
        group = _pids_cgroup(limits.processes) if os.geteuid() == 0 else None
        with self._lock:
            if self.closed:
                raise LauncherClosed("grading is stopping")
            process = subprocess.Popen(
                self.command(fds, limits.disk_mb),
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                env=env,
                cwd=cwd if not self.sandboxed else "/",
                start_new_session=True,
                preexec_fn=lambda: _apply(rlimits, group),
            )
            self.running.add(process)
            if group is not None:
                self.cgroups[process.pid] = group
        return process


def _rlimits(limits: Limits) -> list[tuple[int, int]]:
    cpu = int(limits.time_limit) + 10
    size = limits.file_size_mb * 2**20
    memory = limits.memory_mb * 2**20
    # RLIMIT_NPROC counts every process of the user: leave room for the ones the grader's user has
    processes = limits.processes + (_user_processes() if os.geteuid() != 0 else 0)
    return [(resource.RLIMIT_AS, memory), (resource.RLIMIT_FSIZE, size), (resource.RLIMIT_CPU, cpu),
            (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, processes)]


def _user_processes() -> int:
    """How many processes (threads included, as RLIMIT_NPROC counts them) this user runs now."""
    uid, count = os.getuid(), 0
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and proc.stat().st_uid == uid:
                count += len(os.listdir(proc / "task"))
    return count


CGROUP_PIDS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))


def _pids_cgroup(processes: int) -> Path | None:
    """A new cgroup with ``pids.max = processes``, or None where none can be made here."""
    for base in CGROUP_PIDS:
        if not (base / "cgroup.procs").exists():
            continue
        if base == Path("/sys/fs/cgroup") and "pids" not in (base / "cgroup.subtree_control").read_text(errors="replace").split():
            continue
        group = base / f"seqcourse-{secrets.token_hex(6)}"
        try:
            group.mkdir()
            (group / "pids.max").write_text(str(processes))
            return group
        except OSError:
            _remove_cgroup(group)
    return None


def _remove_cgroup(group: Path) -> None:
    """Kill whatever is still in the cgroup (unsandboxed, the detached children of a worker that
    left their session), then remove it (its processes may take a moment to be reaped)."""
    for _ in range(50):
        with contextlib.suppress(OSError, ValueError):
            for pid in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid), signal.SIGKILL)
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)


def _apply(rlimits: list[tuple[int, int]], group: Path | None) -> None:
    """In the child before exec: join the cgroup ``group`` (when not None), then the rlimits."""
    if group is not None:
        with open(group / "cgroup.procs", "w") as stream:
            stream.write(str(os.getpid()))
    for which, value in rlimits:
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the size cap fails instead of killing


def _remove_tree(path: Path) -> None:
    """Delete a scratch folder, whatever permissions the student's code left on it."""
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
    """One worker: start it, follow its units, enforce the per-unit and total limits."""

    def __init__(self, launcher: Launcher, units: list[Unit], *, skip: set[str], limits: Limits, deadline: float,
                 workdir: Path, preload: list[str], record: RunRecord):
        self.launcher, self.limits, self.deadline, self.workdir, self.record = launcher, limits, deadline, workdir, record
        self.units, self.preload = units, preload
        self.order = [unit.id for unit in units if unit.id not in skip]
        self.skip = skip
        self.nonce = secrets.token_hex(16)

    def _spec(self, home: str, tmp: str) -> dict:
        questions = {}
        for unit in self.units:
            if unit.kind == "record":
                questions[unit.spec["question"]] = {key: unit.spec[key] for key in ("outputs", "allow_autograd", "forbids")}
                questions[unit.spec["question"]]["cases"] = unit.spec["cases"][: unit.spec["published"]]
        return {
            "nonce": self.nonce,
            "units": [{"id": unit.id, "kind": unit.kind, **unit.spec} for unit in self.units],
            "questions": questions,
            "skip": sorted(self.skip),
            "preload": self.preload,
            "output_limit": self.limits.output_limit,
            "home": home,
            "tmp": tmp,
            "env": self.launcher.env(home, tmp),
        }

    def run(self) -> tuple[bool, str | None]:
        """(stop, unit to skip on the next attempt)."""
        scratch = Path(tempfile.mkdtemp(prefix="seqcourse-submission-", dir=self.workdir))
        os.chmod(scratch, 0o777)  # the unsandboxed worker may run as another user
        spec_fd = _spec_fd(self.workdir, self._spec(*self.launcher.places(scratch)))
        read_fd, write_fd = os.pipe()
        control_read, control_write = os.pipe()
        log_path = self.workdir / f"log-{self.nonce[:12]}.txt"
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            process = self.launcher.start((spec_fd, write_fd, control_read), log_fd, scratch, self.limits)
        except OSError:
            os.close(read_fd)
            os.close(control_write)
            _remove_tree(scratch)
            raise
        finally:
            for fd in (spec_fd, write_fd, control_read, log_fd):
                os.close(fd)
        try:
            return self._follow(process, read_fd, control_write)
        finally:
            self.launcher.finished(process)
            for fd in (read_fd, control_write):
                os.close(fd)
            with contextlib.suppress(OSError):
                self.record.log_tail = log_path.read_text(errors="replace")[-2000:]
                log_path.unlink()
            _remove_tree(scratch)

    def _follow(self, process: subprocess.Popen, read_fd: int, control_fd: int) -> tuple[bool, str | None]:
        """Read the worker's reports until it finishes, dies, or a limit is hit:
        (stop, unit to skip next time)."""
        position, current, unit_deadline, kill_at, done = 0, None, None, None, False
        pending = bytearray()  # the start of a line whose end has not arrived yet
        exited = False
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                self.record.time_limit_hit = True
                return True, None
            if current is not None and kill_at is None and now >= unit_deadline:
                with contextlib.suppress(OSError):
                    os.write(control_fd, b"i")
                self.record.timed_out.append(current)
                kill_at = now + self.limits.grace
            if kill_at is not None and now >= kill_at:
                return False, current
            if done:
                break
            wake = min(self.deadline, now + 0.2, kill_at or unit_deadline or self.deadline)
            readable, _, _ = select.select([read_fd], [], [], 0 if exited else max(0.0, wake - now))
            if not readable:
                if exited:  # exited, and what it wrote has been read: stop waiting on the pipe
                    break
                exited = process.poll() is not None
                continue
            chunk = os.read(read_fd, 1 << 20)
            if not chunk:
                break
            pending += chunk
            if len(pending) > MAX_LINE:
                self.record.forged.append("a line longer than 256 MB on the result pipe")
                return True, None
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
            return True, None
        code = _exit_code(process, self.launcher.sandboxed)
        if current is None:
            self.record.crashed.append(("startup" if position == 0 else "between-units", code))
            return True, None
        if code == -signal.SIGKILL:
            self.record.memory_killed.append(current)
        else:
            self.record.crashed.append((current, code))
        return False, current

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


def _exit_code(process: subprocess.Popen, sandboxed: bool, timeout: float = 5.0) -> int | None:
    """The worker's exit code as ``subprocess`` reports it (negative: killed by that signal);
    bubblewrap reports a signal as 128 + its number. None if it has not exited in ``timeout``."""
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
    return -(code - 128) if sandboxed and code > 128 else code


def kill(process: subprocess.Popen, sandboxed: bool) -> None:
    """Kill the worker and everything it started: in the sandbox, killing bubblewrap ends the PID
    namespace and with it every process in it; unsandboxed, the worker's session (process group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if sandboxed:
            process.kill()
        else:
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_units(launcher: Launcher, units: list[Unit], limits: Limits, workdir: Path, preload: list[str] = ()) -> RunRecord:
    """Run ``units`` in fresh sandboxed workers until all have run or been skipped, or time is up.

    workdir: a private folder for the job spec, the worker's log and (unsandboxed) its scratch
    folder, which is deleted after each attempt; never visible inside the sandbox."""
    record = RunRecord()
    start = time.monotonic()
    deadline = start + limits.time_limit
    skip: set[str] = set()
    while True:
        record.attempts += 1
        recorded = {unit.id for unit in units if unit.kind == "record" and unit.id in record.results}
        stop, bad = _Attempt(launcher, units, skip=skip | recorded, limits=limits, deadline=deadline,
                             workdir=Path(workdir), preload=list(preload), record=record).run()
        if stop or bad is None or bad in skip:
            break
        skip.add(bad)
    record.seconds = time.monotonic() - start
    return record
