"""A static audit of the code a student's solution cells run, outside the student's kernel.

It reads the cells' syntax (IPython's ``%magics`` and ``!commands`` translated first, as IPython
does) and reports code that reaches for the means to interfere with grading, each as a
:class:`Finding` whose flag is ``suspicious:RULE``:

=====================  ===========================================================================
rule                   what it matches
=====================  ===========================================================================
monkeypatch            assigning or deleting an attribute or item of an imported module or object
                       (``np.allclose = ...``, ``torch.Tensor.__eq__ = ...``), ``setattr``/``delattr`` on one
redefines:NAME         a student cell rebinding a name the instructor's cells define or read
                       (``check``, ``torch``, builtins such as ``all``); re-importing the same thing is fine
input-transformer      IPython's input or AST transformers (they can rewrite or blank later cells)
ipython                any other use of ``get_ipython()`` or IPython's modules, and magics other than
                       ``%matplotlib``, ``%time``, ``%timeit``, ``%%capture`` (whose bodies are audited too)
exec                   ``exec``, ``eval``, ``compile``, ``__import__``, ``importlib``, ``runpy``, ``pickle``, ``marshal``,
                       building code or function objects, ``%run``
introspection          ``globals()``, ``vars()``, ``locals()``, ``inspect``, ``gc``, ``ctypes``, frames, ``sys.modules``,
                       ``__dict__``, ``__code__``, ``__globals__``, ``__subclasses__`` and the like
process                ``subprocess``, ``os.system``, ``os.fork``, ``os.kill``, ``signal``, threads, sockets, ``!cmd``
file-access            ``open``, ``os``/``shutil``/``pathlib``/``tempfile`` file operations, ``np.save``/``torch.load``...
grading-internals      seqcourse's grading package beyond ``check`` (the registry, the reference
                       implementations, the expected outputs a check returns)
=====================  ===========================================================================

The rules are deliberately broad: a flag asks a person to look, it does not change a score. They
are no proof either way: the out-of-kernel comparison is what makes a score trustworthy, and the
in-kernel :class:`~seqcourse.autograde.worker.Monitor` catches rebinding done in ways this audit
cannot see (``m = np; m.allclose = ...``).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

TRANSFORMER_ATTRS = frozenset(
    {
        "input_transformers_cleanup",
        "input_transformers_post",
        "input_transformer_manager",
        "ast_transformers",
        "input_splitter",
        "transform_cell",
        "transform_ast",
        "cleanup_transforms",
        "line_transforms",
        "token_transformers",
    }
)
SAFE_MAGICS = frozenset({"matplotlib", "time", "timeit", "capture"})
SHELL_MAGICS = frozenset({"system", "sx", "bash", "sh", "script", "perl", "ruby", "python", "python2", "python3", "pypy"})
FILE_MAGICS = frozenset({"writefile", "load", "save", "store", "cd", "bookmark"})
EXEC_NAMES = frozenset({"exec", "eval", "compile", "__import__", "breakpoint"})
EXEC_MODULES = frozenset({"importlib", "runpy", "marshal", "pickle", "dill", "cloudpickle", "code", "codeop", "imp", "zipimport"})
EXEC_ATTRS = frozenset({"__import__", "FunctionType", "CodeType", "LambdaType", "import_module", "load_module", "exec_module"})
INTROSPECTION_NAMES = frozenset({"globals", "vars", "locals", "__builtins__"})
INTROSPECTION_MODULES = frozenset({"inspect", "gc", "ctypes", "_ctypes", "cffi"})
INTROSPECTION_ATTRS = frozenset(
    {
        "_getframe",
        "__globals__",
        "__code__",
        "__closure__",
        "__defaults__",
        "__kwdefaults__",
        "__builtins__",
        "__dict__",
        "__subclasses__",
        "__bases__",
        "__base__",
        "__mro__",
        "f_locals",
        "f_globals",
        "f_back",
        "f_builtins",
        "tb_frame",
        "gi_frame",
        "cr_frame",
        "ag_frame",
        "__setattr__",
        "__getattribute__",
        "__delattr__",
        "settrace",
        "setprofile",
    }
)
PROCESS_MODULES = frozenset(
    {"subprocess", "signal", "threading", "_thread", "multiprocessing", "concurrent", "resource", "socket", "pty",
     "asyncio", "sched", "selectors", "fcntl", "pexpect", "psutil"}
)
OS_PROCESS = frozenset(
    {"system", "popen", "fork", "forkpty", "kill", "killpg", "execl", "execle", "execlp", "execlpe", "execv", "execve",
     "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe",
     "posix_spawn", "posix_spawnp", "setsid", "setpgid", "setpgrp", "_exit", "abort", "getppid", "nice", "wait",
     "waitpid", "register_at_fork", "putenv", "unsetenv"}
)
FILE_MODULES = frozenset({"shutil", "tempfile", "glob", "pathlib", "sqlite3", "zipfile", "tarfile", "mmap", "h5py"})
OS_FILE = frozenset(
    {"open", "write", "read", "remove", "unlink", "rename", "renames", "replace", "mkdir", "makedirs", "listdir",
     "scandir", "walk", "chdir", "rmdir", "removedirs", "fdopen", "dup", "dup2", "pipe", "truncate", "ftruncate",
     "chmod", "chown", "symlink", "link", "mkfifo", "sendfile"}
)
ARRAY_FILE = frozenset({"save", "savez", "savez_compressed", "savetxt", "load", "loadtxt", "fromfile", "memmap", "genfromtxt"})
FILE_METHODS = frozenset({"tofile", "write_text", "write_bytes", "read_text", "read_bytes"})
GRADING_ATTRS = frozenset({"reference", "get_question", "question_ids", "run_student", "registry", "_questions", "expected"})
GRADING_STRINGS = ("seqcourse.grading", "grading.questions", "grading.registry")
DEFAULT_ALIASES = {"np": "numpy", "numpy": "numpy", "torch": "torch", "os": "os", "sys": "sys", "builtins": "builtins"}


@dataclass(frozen=True)
class Finding:
    """One match: the rule, the cell (its grade_id), the line in the cell and its code."""

    rule: str
    cell: str
    line: int
    code: str

    @property
    def flag(self) -> str:
        return f"suspicious:{self.rule}"

    def to_dict(self) -> dict:
        return {"flag": self.flag, "cell": self.cell, "line": self.line, "code": self.code}


def parse_cell(source: str) -> ast.Module | None:
    """The cell as a Python syntax tree, IPython syntax translated the way IPython does; None
    when it is not valid Python (the cell then fails when it runs, unless an earlier cell
    installed an input transformer, which this audit reports)."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError, TypeError):
        return None


class _Bindings(ast.NodeVisitor):
    """Names bound at a cell's top level (including ``global`` names assigned in functions), with
    the import target for imports and the first line that binds them."""

    def __init__(self):
        self.found: dict[str, tuple[str | None, int]] = {}

    def bind(self, name: str, target: str | None, line: int) -> None:
        self.found[name] = (target, self.found.get(name, (None, line))[1])

    def visit_Import(self, node):
        for alias in node.names:
            top = alias.name.split(".")[0]
            self.bind(alias.asname or top, alias.name if alias.asname else top, node.lineno)

    def visit_ImportFrom(self, node):
        module = "." * node.level + (node.module or "")
        for alias in node.names:
            self.bind(alias.asname or alias.name, f"{module}.{alias.name}", node.lineno)

    def visit_Name(self, node):
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self.bind(node.id, None, node.lineno)

    def visit_FunctionDef(self, node):
        self.bind(node.name, None, node.lineno)
        for child in node.decorator_list + node.args.defaults + [d for d in node.args.kw_defaults if d]:
            self.visit(child)
        declared = {name for sub in ast.walk(node) if isinstance(sub, ast.Global) for name in sub.names}
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id in declared and isinstance(sub.ctx, (ast.Store, ast.Del)):
                self.bind(sub.id, None, sub.lineno)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.bind(node.name, None, node.lineno)
        for child in node.decorator_list + node.bases:
            self.visit(child)

    def visit_Lambda(self, node):
        for child in node.args.defaults:
            self.visit(child)

    def _comprehension(self, node):
        self.visit(node.generators[0].iter)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension


def _bindings(tree: ast.Module) -> dict[str, tuple[str | None, int]]:
    visitor = _Bindings()
    visitor.visit(tree)
    return visitor.found


def bound_names(tree: ast.Module) -> dict[str, str | None]:
    """Names a cell binds at its top level -> the import target (``"torch"``,
    ``"seqcourse.grading.check"``), or None for anything but an import."""
    return {name: target for name, (target, _) in _bindings(tree).items()}


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


class _Auditor(ast.NodeVisitor):
    def __init__(self, cell: str, lines: list[str], *, aliases: dict[str, str], offset: int = 0):
        self.cell, self.lines, self.aliases, self.offset = cell, lines, aliases, offset
        self.findings: list[Finding] = []
        self.parents: dict[ast.AST, ast.AST] = {}

    def add(self, rule: str, node: ast.AST) -> None:
        line = getattr(node, "lineno", 1)
        code = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        self.findings.append(Finding(rule, self.cell, line + self.offset, code[:200]))

    def module_of(self, node: ast.AST) -> str | None:
        root = _root(node)
        return self.aliases.get(root) if root else None

    def run(self, tree: ast.Module) -> list[Finding]:
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent
        self.visit(tree)
        return self.findings

    def _imported(self, module: str, names: list[str], node: ast.AST) -> None:
        top = module.split(".")[0]
        if top in EXEC_MODULES:
            self.add("exec", node)
        if top in INTROSPECTION_MODULES:
            self.add("introspection", node)
        if top in PROCESS_MODULES:
            self.add("process", node)
        if top in FILE_MODULES:
            self.add("file-access", node)
        if top in ("IPython", "ipykernel"):
            self.add("ipython", node)
        if module.startswith("seqcourse.grading") and names != ["check"] or module == "seqcourse" and "grading" in names:
            self.add("grading-internals", node)
        if module == "os":
            if set(names) & OS_PROCESS:
                self.add("process", node)
            if set(names) & OS_FILE:
                self.add("file-access", node)
        if module == "sys" and "modules" in names:
            self.add("introspection", node)

    def visit_Import(self, node):
        for alias in node.names:
            self._imported(alias.name, [], node)
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        self._imported(node.module or "", [alias.name for alias in node.names], node)
        self.generic_visit(node)

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load):
            if node.id in EXEC_NAMES:
                self.add("exec", node)
            elif node.id in INTROSPECTION_NAMES:
                self.add("introspection", node)
            elif node.id == "open":
                self.add("file-access", node)
            elif node.id == "get_ipython":
                self._get_ipython(node)

    def _get_ipython(self, node: ast.Name) -> None:
        call = self.parents.get(node)
        attribute = self.parents.get(call) if isinstance(call, ast.Call) else None
        name = attribute.attr if isinstance(attribute, ast.Attribute) else None
        if name in TRANSFORMER_ATTRS:
            return  # reported by visit_Attribute
        if name in ("system", "getoutput", "system_piped", "system_raw"):
            self.add("process", node)
            return
        magic_call = self.parents.get(attribute)
        if name in ("run_line_magic", "run_cell_magic") and isinstance(magic_call, ast.Call) and magic_call.args:
            magic = magic_call.args[0]
            magic = magic.value if isinstance(magic, ast.Constant) and isinstance(magic.value, str) else None
            if magic in SAFE_MAGICS:  # their argument line and cell body are code: audit them too
                for code in magic_call.args[1:3]:
                    if isinstance(code, ast.Constant) and isinstance(code.value, str):
                        self.findings += _audit_source(code.value, self.cell, self.aliases, node.lineno + self.offset)
                return
            if magic in SHELL_MAGICS:
                self.add("process", node)
                return
            if magic in FILE_MAGICS:
                self.add("file-access", node)
                return
            if magic == "run":
                self.add("exec", node)
                return
        self.add("ipython", node)

    def visit_Attribute(self, node):
        module = self.module_of(node.value)
        attr = node.attr
        if isinstance(node.ctx, (ast.Store, ast.Del)) and self.module_of(node) is not None:
            self.add("monkeypatch", node)
        if attr in TRANSFORMER_ATTRS:
            self.add("input-transformer", node)
        if attr in EXEC_ATTRS:
            self.add("exec", node)
        if attr in INTROSPECTION_ATTRS or (attr == "modules" and module == "sys"):
            self.add("introspection", node)
        if module == "os" and attr in OS_PROCESS:
            self.add("process", node)
        if (module == "os" and attr in OS_FILE) or attr in FILE_METHODS:
            self.add("file-access", node)
        if module and module.split(".")[0] in ("numpy", "torch") and attr in ARRAY_FILE:
            self.add("file-access", node)
        if module == "io" and attr in ("open", "FileIO"):
            self.add("file-access", node)
        if attr in GRADING_ATTRS or (attr == "grading" and module == "seqcourse"):
            self.add("grading-internals", node)
        self.generic_visit(node)

    def visit_Subscript(self, node):
        if isinstance(node.ctx, (ast.Store, ast.Del)) and self.module_of(node) is not None:
            self.add("monkeypatch", node)
        self.generic_visit(node)

    def visit_Call(self, node):
        name = getattr(node.func, "id", None)
        if name in ("setattr", "delattr") and node.args and self.module_of(node.args[0]) is not None:
            self.add("monkeypatch", node)
        self.generic_visit(node)

    def visit_Constant(self, node):
        if isinstance(node.value, str):
            if any(attr in node.value for attr in TRANSFORMER_ATTRS):
                self.add("input-transformer", node)
            if any(text in node.value for text in GRADING_STRINGS):
                self.add("grading-internals", node)


def _audit_source(source: str, cell: str, aliases: dict[str, str], offset: int = 0) -> list[Finding]:
    tree = parse_cell(source)
    if tree is None:
        return []
    from IPython.core.inputtransformer2 import TransformerManager

    lines = TransformerManager().transform_cell(source).splitlines()
    return _Auditor(cell, lines, aliases=aliases, offset=offset).run(tree)


def audit(cells: list[tuple[str, str, dict[str, str | None]]]) -> list[Finding]:
    """Audit the student's code cells, in the order they run.

    cells: ``(label, source, protected)`` for each; ``protected`` maps the names the instructor's
    cells define before it (and the builtins they read) to their import target, None for anything
    but an import (see :meth:`seqcourse.autograde.assemble.Plan.protected_before`). Returns the
    findings, one per rule and line."""
    findings: list[Finding] = []
    student_imports: dict[str, str] = {}
    for label, source, protected in cells:
        tree = parse_cell(source)
        if tree is None:
            continue
        bindings = _bindings(tree)
        imports = {name: target for name, (target, _) in bindings.items() if target is not None}
        student_imports.update(imports)
        instructor_imports = {n: t for n, t in protected.items() if t and not t.startswith("builtins.")}
        aliases = {**DEFAULT_ALIASES, **instructor_imports, **student_imports}
        found = _audit_source(source, label, aliases)
        lines = source.splitlines()
        for name, (target, line) in bindings.items():
            if name in protected and (target is None or target != protected[name]):
                code = lines[line - 1].strip() if 0 < line <= len(lines) else ""
                found.append(Finding(f"redefines:{name}", label, line, code[:200]))
        findings += found
    unique = {(f.rule, f.cell, f.line): f for f in findings}
    return sorted(unique.values(), key=lambda f: (f.cell, f.line, f.rule))
