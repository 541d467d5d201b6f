"""The package's architecture, read from its source: layers, private names, imports inside functions.

``seqcourse`` is layered; a module may import from its own layer and the layers below it, never from
one above (which is how cycles and "measurement code that needs the benchmark CLI" creep in):

    base       validation, device              checks, the device, set-up
    data       data/                           what the models read
    ops        ops/                            algorithms written from scratch
    models     models/                         every model, no chapter code
    training   train                           the one training loop
    measure    measure/                        timing and the chapters' measurements
    viz        viz/                            figures, their alt text, widgets
    tools      tools/, experiments/,           benchmarks, notebook set-up, the trained-experiment
               grading/, autograde/,           records, the student's checks (grading) and the
               __main__, the package root      instructor's grader (autograde), the command line

Each folder is one layer, so a module's place says what it may import; only the two bottom layers'
modules and the training loop sit at the package root.

The checks, each also run on a small synthetic module so that a checker that stopped seeing a
problem fails too:

- every module belongs to exactly one layer (a new module must be placed);
- no module imports from a higher layer, at module level or inside a function;
- no private name (``_x``) is imported from another module: make it public, or move it;
- an import of the package's own modules inside a function body carries a comment saying why
  (on its line or the line above);
- every device default is ``None``, resolved by ``get_device`` (so ``$SEQCOURSE_DEVICE`` holds
  everywhere), never a fallback of a function's own;
- a chapter notebook defines no function or class the package defines, and none another chapter
  defines too (it belongs in the package then);
- every constructor (``__init__``) in the package takes at most two arguments by position besides
  ``self``; the rest are keyword-only, so that ``MambaBlock(64, 16, expand=2, conv_size=4)`` says
  what each number is;
- every chapter sets up through ``seqcourse.setup()`` (no threads or CPU device chosen by hand) and
  draws every figure through ``seqcourse.viz`` (no matplotlib in its cells);
- every third-party package the code imports is declared in pyproject.toml and pinned in
  requirements.txt, and no tracked file cites a file outside the repository.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "seqcourse"

LAYERS: dict[str, tuple[str, ...]] = {
    "base": ("validation", "device"),
    "data": ("data",),
    "ops": ("ops",),
    "models": ("models",),
    "training": ("train",),
    "measure": ("measure",),
    "viz": ("viz",),
    "tools": ("tools", "experiments", "grading", "autograde", "__main__", ""),
}
RANK = {layer: i for i, layer in enumerate(LAYERS)}


def layer_of(module: str) -> str | None:
    """The layer of a module named relative to the package ("models.rnn", "ops.scan", "" for the root)."""
    head = module.split(".")[0]
    for layer, members in LAYERS.items():
        if head in members:
            return layer
    return None


def relative_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool):
    """(node, target module relative to the package, inside_function) for every import of the package's
    own modules; a ``from . import x`` is resolved to ``x`` when x is a module."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inside = {id(n) for f in functions for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - node.level + 1] if node.level > 1 else package
            target = [p for p in base if p] + (node.module.split(".") if node.module else [])
            names = [a.name for a in node.names]
            if not node.module and all((PACKAGE.joinpath(*target, n)).with_suffix(".py").exists()
                                       or (PACKAGE.joinpath(*target, n)).is_dir() for n in names):
                for n in names:
                    yield node, ".".join(target + [n]), id(node) in inside
            else:
                yield node, ".".join(target), id(node) in inside
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for name in names:
                if name == "seqcourse" or (name or "").startswith("seqcourse."):
                    yield node, name.removeprefix("seqcourse").lstrip("."), id(node) in inside


def problems(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Every architecture problem of one module's source (module docstring)."""
    found = []
    layer = layer_of(module)
    if layer is None:
        found.append(f"{module or 'seqcourse'}: in no layer; add it to LAYERS in tests/test_architecture.py")
    tree = ast.parse(source)
    lines = source.splitlines()
    for node, target, in_function in _imports(tree, module, is_package):
        where = f"{module or 'seqcourse'}:{node.lineno}"
        target_layer = layer_of(target)
        if layer and target_layer and RANK[target_layer] > RANK[layer]:
            found.append(f"{where}: the {layer} layer imports {target or 'seqcourse'} from the higher {target_layer} layer")
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{where}: imports the private name {alias.name} from {target or 'seqcourse'}")
        if in_function:
            here = lines[node.lineno - 1]
            above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
            if "#" not in here and not above.startswith("#"):
                found.append(f"{where}: imports {target or 'seqcourse'} inside a function without a comment saying why")
    return found


def test_the_package_keeps_its_architecture():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += problems(path.read_text(), relative_name(path), is_package=path.name == "__init__.py")
    assert not found, "\n".join(found)


def test_every_layer_named_exists():
    for layer, members in LAYERS.items():
        for member in members:
            if member:
                assert (PACKAGE / f"{member}.py").exists() or (PACKAGE / member).is_dir(), (layer, member)


@pytest.mark.parametrize("module, source, expected", [
    ("models.rnn", "from ..train import train\n", "the models layer imports train from the higher training layer"),
    ("ops.scan", "from ..measure.comparison import make_core\n", "the ops layer imports measure.comparison from the higher measure layer"),
    ("measure.comparison", "def f():\n    from ..tools.bench_models import x  # the benchmark's timer\n",
     "the measure layer imports tools.bench_models from the higher tools layer"),
    ("data.tasks", "import seqcourse.viz.plots\n", "the data layer imports viz.plots from the higher viz layer"),
    ("models.seq2seq", "from ..validation import _same_device\n", "imports the private name _same_device"),
    ("measure.comparison", "def f():\n    from ..data.tasks import copy_task\n", "inside a function without a comment"),
    ("measure.comparison", "from ..tools import bench\n", "imports tools from the higher tools layer"),
    ("newmodule", "import torch\n", "newmodule: in no layer"),
])
def test_the_checker_sees_each_kind_of_problem(module, source, expected):
    assert any(expected in p for p in problems(source, module)), problems(source, module)


def test_the_checker_accepts_what_is_allowed():
    assert problems("from ..validation import expect_int\nfrom .rnn import RNN\n", "models.gated") == []
    assert problems("def f():\n    # only the recording run needs it\n    from ..device import get_device\n",
                    "measure.comparison") == []
    assert problems("from ..data import tasks\nfrom ..models.rnn import RNN\n", "measure.comparison") == []



def device_default_problems(source: str, module: str) -> list[str]:
    """A function's device defaults to ``None`` and is resolved by ``get_device`` (which honours
    ``$SEQCOURSE_DEVICE``), never by a fallback of its own such as ``device if device is not None
    else torch.device("cpu")``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args
            pairs = list(zip(args[len(args) - len(node.args.defaults):], node.args.defaults))
            pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None]
            for arg, default in pairs:
                if arg.arg == "device" and not (isinstance(default, ast.Constant) and default.value is None):
                    found.append(f"{module}:{node.lineno}: {node.name}'s device defaults to "
                                 f"{ast.unparse(default)}; default to None and call get_device")
        test = node.test if isinstance(node, ast.IfExp) else None
        if (isinstance(test, ast.Compare) and "device" in ast.unparse(test.left)
                and any(isinstance(c, ast.Constant) and c.value is None for c in test.comparators)):
            found.append(f"{module}:{node.lineno}: chooses a device itself ({ast.unparse(node)}); call get_device")
    return found


def package_problems(check, *, skip: tuple[str, ...] = ()) -> list[str]:
    """``check(source, module)`` over every module of the package but the files named in ``skip``."""
    return [problem for path in sorted(PACKAGE.rglob("*.py")) if path.name not in skip
            for problem in check(path.read_text(), relative_name(path))]


def test_every_device_default_goes_through_get_device():
    found = package_problems(device_default_problems, skip=("device.py",))
    assert not found, "\n".join(found)


@pytest.mark.parametrize("source", [
    'def f(x, device="cpu"):\n    pass\n',
    'def f(x, *, device=torch.device("cpu")):\n    pass\n',
    'def f(x, device=None):\n    device = torch.device(device) if device is not None else torch.device("cpu")\n',
])
def test_the_device_check_sees_a_fallback_of_its_own(source):
    assert device_default_problems(source, "measure.x")
    assert not device_default_problems("def f(x, device=None):\n    device = get_device(device)\n", "measure.x")

# ---- the chapters ----------------------------------------------------------------------------------

BOOK = ROOT / "book"


def _top_level_names(source: str) -> set[str]:
    tree = ast.parse(source)
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def chapter_definitions(path: Path) -> set[str]:
    """The functions and classes a chapter notebook defines at the top level of its code cells
    (IPython's magic lines read as ``pass``)."""
    import nbformat  # only this test reads notebooks

    names = set()
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code":
            code = "\n".join(line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!"))
                             else line for line in cell.source.splitlines())
            names |= _top_level_names(code)
    return names


def notebook_problems(definitions: dict[str, set[str]], package_names: set[str]) -> list[str]:
    """A chapter may define small helpers of its own, but none the package already has, and none that
    another chapter also needs (then it belongs in the package)."""
    found = []
    for chapter, names in sorted(definitions.items()):
        for name in sorted(names & package_names):
            found.append(f"{chapter} defines {name}, which the package defines too: import it")
        for other, their in sorted(definitions.items()):
            if other > chapter:
                for name in sorted(names & their):
                    found.append(f"{chapter} and {other} both define {name}: move it into the package")
    return found


def test_chapters_define_nothing_the_package_or_another_chapter_has():
    package_names = set().union(*(_top_level_names(p.read_text()) for p in PACKAGE.rglob("*.py")))
    definitions = {p.name: chapter_definitions(p) for p in sorted(BOOK.glob("*.ipynb"))}
    found = notebook_problems(definitions, package_names)
    assert not found, "\n".join(found)


def test_the_notebook_check_sees_both_kinds_of_problem():
    found = notebook_problems({"01.ipynb": {"show", "train"}, "02.ipynb": {"show"}}, {"train"})
    assert found == ["01.ipynb defines train, which the package defines too: import it",
                     "01.ipynb and 02.ipynb both define show: move it into the package"]


SET_UP_BY_HAND = re.compile(r"torch\.set_num_threads\(|get_device\(\s*['\"]cpu")


def set_up_problems(name: str, cells: list[str]) -> list[str]:
    """A chapter's set-up is ``seqcourse.setup()`` in its first code cells, and nothing else sets the
    threads or a device of its own. (A cell may re-seed torch for a worked example that must not
    depend on the cells before it.)"""
    found = []
    if not any("seqcourse.setup()" in cell for cell in cells[:3]):
        found.append(f"{name}: does not call seqcourse.setup() in its first code cells")
    for i, cell in enumerate(cells):
        for match in SET_UP_BY_HAND.finditer(cell):
            found.append(f"{name} code cell {i}: sets up by hand ({match.group(0)}...); seqcourse.setup() does it")
    return found


def test_every_chapter_sets_up_through_seqcourse_setup():
    import nbformat  # only these tests read notebooks

    found = []
    for path in sorted(BOOK.glob("*.ipynb")):
        cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        found += set_up_problems(path.name, cells)
    assert not found, "\n".join(found)


def test_the_set_up_check_sees_a_copied_set_up():
    assert set_up_problems("x.ipynb", ["import torch\ntorch.set_num_threads(1)"]) == [
        "x.ipynb: does not call seqcourse.setup() in its first code cells",
        "x.ipynb code cell 0: sets up by hand (torch.set_num_threads(...); seqcourse.setup() does it"]
    assert set_up_problems("x.ipynb", ["FULL, DEVICE, SEED = seqcourse.setup()", "x = 1",
                                       "DEVICE = get_device('cpu')"]) == [
        "x.ipynb code cell 2: sets up by hand (get_device('cpu...); seqcourse.setup() does it"]
    assert set_up_problems("x.ipynb", ["FULL, DEVICE, SEED = seqcourse.setup()", "torch.manual_seed(0)"]) == []


# ---- the repository stands alone ---------------------------------------------------------------------

OUTSIDE = re.compile(r"\.\./shared|\bDESIGN\.md\b|\bseeds/[\w-]+\.(?:md|txt)\b")
"""What a file outside the repository is cited by: the workspace's shared folder, its design document,
or the seed texts the course was written from. (Written with escapes, so this file does not match.)"""


def test_the_repository_cites_no_file_outside_itself():
    """A reader of the repository must find every fact in it, so no tracked file (this one included)
    names a file the repository does not hold (``OUTSIDE``)."""
    assert all(OUTSIDE.search(text) for text in ("see .." + "/shared/notes", "DESIGN" + ".md §7", "seeds/" + "ch1.md"))
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    found = []
    for name in tracked:
        path = ROOT / name
        if path.suffix in (".png", ".svg", ".ico", ".woff2") or not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        found += [f"{name}: cites {m.group(0)}" for m in OUTSIDE.finditer(text)]
    assert not found, "\n".join(found)


# ---- the constructors ------------------------------------------------------------------------------

MAX_POSITIONAL = 2


def constructor_problems(source: str, module: str) -> list[str]:
    """Every class whose ``__init__`` takes more than MAX_POSITIONAL arguments by position besides
    ``self`` (positional-only and ``*args`` count as positional): the rest belong after a ``*``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == "__init__":
                args = item.args
                positional = [a.arg for a in args.posonlyargs + args.args][1:]
                if args.vararg:
                    positional.append(f"*{args.vararg.arg}")
                if len(positional) > MAX_POSITIONAL:
                    found.append(f"{module or 'seqcourse'}:{item.lineno}: {node.name}({', '.join(positional)}) takes "
                                 f"{len(positional)} arguments by position; make those after "
                                 f"{', '.join(positional[:MAX_POSITIONAL])} keyword-only (put a * before them)")
    return found


def test_every_constructor_takes_at_most_two_arguments_by_position():
    found = package_problems(constructor_problems)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("source", [
    "class MambaBlock:\n    def __init__(self, d_model, state_size=16, expand=2):\n        pass\n",
    "class Stack:\n    def __init__(self, cell_class, input_size, *cell_options):\n        pass\n",
    "class A:\n    def __init__(self, a, b, c, /, *, d=1):\n        pass\n",
    "def f():\n    class Inner:\n        def __init__(self, a, b, c):\n            pass\n    return Inner\n",
])
def test_the_constructor_check_sees_a_third_positional_argument(source):
    found = constructor_problems(source, "models.synthetic")
    assert len(found) == 1 and "by position" in found[0] and found[0].startswith("models.synthetic:"), found


def test_the_constructor_check_accepts_keyword_only_arguments():
    source = ("class MambaBlock:\n    def __init__(self, d_model, state_size=16, *, expand=2, conv_size=4):\n"
              "        pass\n\n    def reset(self, a, b, c):\n        pass\n\n"
              "class Cell:\n    def __init__(self, input_size, hidden_size, **options):\n        pass\n")
    assert constructor_problems(source, "models.synthetic") == []


# ---- what the package relies on is declared ----------------------------------------------------------

DISTRIBUTION = {"yaml": "pyyaml", "IPython": "ipython"}
"""Import names whose distribution on PyPI is named otherwise (the rest: lower case, _ as -)."""


def third_party_imports() -> dict[str, str]:
    """{distribution: a module that imports it} for every import in the package, at module level or
    inside a function, that is neither the standard library nor seqcourse itself."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "seqcourse":
                    found.setdefault(DISTRIBUTION.get(top, top.lower().replace("_", "-")), relative_name(path))
    return found


def test_every_package_the_code_imports_is_declared_and_pinned():
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    pinned = {line.split("==")[0].strip().lower() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if "==" in line and not line.lstrip().startswith("#")}
    imports = third_party_imports()
    assert {"torch", "numpy", "pyyaml", "ipython"} <= set(imports)  # the scan sees in-function imports too
    missing = [f"{dist} (imported by {module}): not in pyproject.toml's dependencies" for dist, module in imports.items()
               if dist not in declared]
    missing += [f"{dist} (imported by {module}): not pinned in requirements.txt" for dist, module in imports.items()
                if dist not in pinned]
    assert not missing, "\n".join(missing)


DRAWING_BY_HAND = re.compile(r"\bimport matplotlib|\bfrom matplotlib|\bplt\.|\.add_subplot\(|\.subplots\(")


def drawing_problems(name: str, cells: list[str]) -> list[str]:
    """Every figure of a chapter is drawn by a ``seqcourse.viz`` function: no matplotlib in its cells."""
    return [f"{name} code cell {i}: draws by hand ({match.group(0)}); add a function to seqcourse.viz"
            for i, cell in enumerate(cells) for match in DRAWING_BY_HAND.finditer(cell)]


def test_chapters_draw_every_figure_through_viz():
    import nbformat  # only these tests read notebooks

    found = []
    for path in sorted(BOOK.glob("*.ipynb")):
        found += drawing_problems(path.name, [c.source for c in nbformat.read(path, as_version=4).cells
                                              if c.cell_type == "code"])
    assert not found, "\n".join(found)


def test_the_drawing_check_sees_inline_matplotlib():
    assert drawing_problems("x.ipynb", ["import matplotlib.pyplot as plt\nfig, ax = plt.subplots()"]) == [
        "x.ipynb code cell 0: draws by hand (import matplotlib); add a function to seqcourse.viz",
        "x.ipynb code cell 0: draws by hand (plt.); add a function to seqcourse.viz"]
    assert drawing_problems("x.ipynb", ["fig = figure.add_subplot(1, 1, 1)"]) == [
        "x.ipynb code cell 0: draws by hand (.add_subplot(); add a function to seqcourse.viz"]
    assert drawing_problems("x.ipynb", ["plots.loss_curve(losses)"]) == []
