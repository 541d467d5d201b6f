"""What a reader meets besides the rendered pages: the README, the launch targets (Binder, Colab),
the publishing workflow, CI, the offline assets, and the reading aids (glossary, troubleshooting,
citations). The rendered pages themselves are checked in a browser by tests/test_browser.py.

All of it is static (files parsed, small notebooks in memory) except
``test_make_lab_starts_jupyterlab``, which starts `make lab` for real (a few seconds).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
import yaml
from IPython.core.inputtransformer2 import TransformerManager

from book_toc import toc_entries
from seqcourse.tools import notebook_setup
from seqcourse.tools.notebook_setup import CELL_ID, ensure_setup_cell, has_setup_cell, repository_url, setup_cell_source

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
URL = CONFIG["repository"]["url"]
README = (ROOT / "README.md").read_text()
NOTEBOOK_FOLDERS = ("book", "solutions", "exercises")
INSERT_COMMAND = ".venv/bin/python -m seqcourse.tools.notebook_setup book solutions && make exercises"


def bash_commands(markdown: str) -> list[str]:
    """Every command line in the ```bash blocks of a Markdown text, comments stripped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, re.S):
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            if command:
                lines.append(command)
    return lines


def requirement_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


# --- The Colab set-up cell -------------------------------------------------------------------------


def test_repository_url_is_read_from_the_config():
    assert repository_url(ROOT / "_config.yml") == URL.rstrip("/")


def test_repository_url_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Jupyter Book configuration"):
        repository_url(tmp_path / "_config.yml")
    (tmp_path / "_config.yml").write_text("repository:\n  url: git@github.com:a/b.git\n")
    with pytest.raises(ValueError, match="repository.url must be an https address"):
        repository_url(tmp_path / "_config.yml")
    with pytest.raises(ValueError, match="https address"):
        setup_cell_source('https://example.org/x" && rm -rf ~')


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for folder in NOTEBOOK_FOLDERS
                                        for p in (ROOT / folder).glob("*.ipynb")))
def test_every_notebook_starts_with_the_setup_cell_built_from_the_config(path):
    nb = nbformat.read(ROOT / path, as_version=4)
    assert has_setup_cell(nb, URL.rstrip("/")), (
        f"{path}: the first code cell is not the current set-up cell for {URL}; run `{INSERT_COMMAND}`")
    cell = notebook_setup.first_code_cell(nb)
    assert f"git+{URL.rstrip('/')}" in cell.source
    assert "nbval-ignore-output" in cell.metadata["tags"]


def _notebook(*sources: str, executed: bool = False, nbgrader: bool = False):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("# A chapter"))
    for i, source in enumerate(sources, start=1):
        cell = nbformat.v4.new_code_cell(source)
        if executed:
            cell.execution_count = i
            cell.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "1"}, execution_count=i)]
        if nbgrader:
            cell.metadata["nbgrader"] = {"grade": False, "grade_id": f"c{i}", "locked": True,
                                         "schema_version": 3, "solution": False}
        nb.cells.append(cell)
    return nb


def test_the_cell_goes_before_the_first_code_cell_once_and_counts_are_renumbered():
    nb = _notebook("import torch", "x = 1", executed=True)
    assert ensure_setup_cell(nb, URL) is True
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code", "code"]
    assert nb.cells[1].id == CELL_ID and nb.cells[1].source == setup_cell_source(URL)
    assert [c.execution_count for c in nb.cells[1:]] == [1, 2, 3]
    assert [c.outputs[0]["execution_count"] for c in nb.cells[2:]] == [2, 3]
    assert set(nb.cells[1].metadata["tags"]) == {"nbval-ignore-output", "remove-cell"}
    assert "nbgrader" not in nb.cells[1].metadata
    nbformat.validate(nb)
    before = nbformat.writes(nb)
    assert ensure_setup_cell(nb, URL) is False and nbformat.writes(nb) == before


def test_a_new_address_rewrites_the_cell_in_place_and_unexecuted_notebooks_stay_unexecuted():
    nb = _notebook("import torch", nbgrader=True)
    ensure_setup_cell(nb, "https://github.com/old/place")
    assert ensure_setup_cell(nb, URL) is True
    setup = [c for c in nb.cells if c.get("id") == CELL_ID]
    assert len(setup) == 1 and f"git+{URL}" in setup[0].source and "old/place" not in setup[0].source
    assert nb.cells[1] is setup[0] and nb.cells[1].execution_count is None
    assert setup[0].metadata["nbgrader"]["grade_id"] == CELL_ID and setup[0].metadata["nbgrader"]["locked"]
    assert setup[0].metadata["editable"] is False


def test_the_command_inserts_checks_and_reports(tmp_path, capsys):
    (tmp_path / "_config.yml").write_text(f"repository:\n  url: {URL}\n")
    folder = tmp_path / "book"
    folder.mkdir()
    nbformat.write(_notebook("x = 1"), folder / "a.ipynb")
    args = ["--config", str(tmp_path / "_config.yml"), str(folder)]
    assert notebook_setup.main(["--check", *args]) == 1
    assert "1 of 1 notebook(s) lack the current set-up cell" in capsys.readouterr().out
    assert notebook_setup.main(args) == 0
    assert has_setup_cell(nbformat.read(folder / "a.ipynb", as_version=4), URL)
    assert notebook_setup.main(["--check", *args]) == 0
    assert notebook_setup.main(["--config", str(tmp_path / "missing.yml"), str(folder)]) == 2
    assert "no Jupyter Book configuration" in capsys.readouterr().err


def _run_cell(source: str, importable: bool) -> list[tuple[str, str]]:
    """Run the set-up cell's Python (as IPython transforms it) with a stand-in for IPython that
    records magics, and seqcourse importable or not."""
    calls = []

    class FakeIPython:
        def run_line_magic(self, name, line):
            calls.append((name, line))

    saved = sys.modules.get("seqcourse")
    if not importable:
        sys.modules["seqcourse"] = None  # makes `import seqcourse` raise ModuleNotFoundError
    try:
        exec(TransformerManager().transform_cell(source), {"get_ipython": FakeIPython})
    finally:
        sys.modules["seqcourse"] = saved
    return calls


def test_the_cell_installs_from_the_repository_only_when_seqcourse_is_missing():
    source = setup_cell_source(URL)
    assert _run_cell(source, importable=True) == []
    assert _run_cell(source, importable=False) == [("pip", f'install --quiet "seqcourse @ git+{URL}"')]


def test_get_device_takes_the_gpu_that_colab_offers(monkeypatch):
    import torch

    from seqcourse import get_device

    monkeypatch.delenv("SEQCOURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device() == torch.device("cuda")


# --- Binder -------------------------------------------------------------------------------------


def test_binder_environment_pins_what_requirements_txt_pins_with_a_cpu_torch():
    top = {re.split("==", line)[0].lower(): line for line in requirement_lines(ROOT / "requirements.txt")}
    binder = requirement_lines(ROOT / "binder" / "requirements.txt")
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in binder
    pins = [line for line in binder if not line.startswith("--")]
    for line in pins:
        name = line.split("==")[0].lower()
        if name == "torch":
            assert line == top["torch"] + "+cpu", "Binder's torch must be the CPU build of the pinned version"
        else:
            assert line == top.get(name), f"binder/requirements.txt pins {line}, requirements.txt {top.get(name)}"
    pinned = {line.split("==")[0].lower() for line in pins}
    # What the notebooks import and what runs them; the book toolchain and test tools stay out.
    assert {"torch", "numpy", "matplotlib", "ipywidgets", "tqdm", "ipykernel", "nbformat", "nbclient"} <= pinned
    assert not pinned & {"jupyter-book", "sphinx", "pytest", "nbval", "playwright"}


def test_binder_runtime_and_postbuild():
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    post_build = ROOT / "binder" / "postBuild"
    assert os.access(post_build, os.X_OK), "binder/postBuild must be executable"
    assert "pip install --no-cache-dir --quiet -e ." in post_build.read_text()
    assert not (ROOT / "environment.yml").exists() and not (ROOT / "binder" / "environment.yml").exists()


# --- Publishing and CI ------------------------------------------------------------------------------


def test_pages_workflow_builds_with_make_book_and_deploys_the_html():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert triggers["push"]["branches"] == [CONFIG["repository"]["branch"]]
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    build = workflow["jobs"]["build"]["steps"]
    runs = [step["run"] for step in build if "run" in step]
    assert runs == ["make book"], "the workflow may only run commands the test suite exercises"
    uses = {step["uses"].split("@")[0]: step for step in build if "uses" in step}
    assert uses["actions/setup-python"]["with"]["python-version"] == "3.11"
    assert uses["actions/upload-pages-artifact"]["with"]["path"] == "_build/html"
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert [step["uses"].split("@")[0] for step in deploy["steps"]] == ["actions/deploy-pages"]
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip().removeprefix("python-")
    assert uses["actions/setup-python"]["with"]["python-version"] == runtime


def _stub(folder: Path, name: str, log: Path) -> None:
    script = folder / name
    script.write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> {shlex.quote(str(log))}\n')
    script.chmod(0o755)


def test_ci_installs_nothing_when_the_packages_are_there_then_runs_make_test_and_bench(tmp_path):
    if not (os.access("/usr/bin/chromium", os.X_OK) and all(any(
            os.access(Path(p) / tool, os.X_OK) for p in os.environ["PATH"].split(os.pathsep)) for tool in ("npm", "bwrap"))):
        pytest.fail("Chromium, npm and bubblewrap must be installed: sudo apt-get install -y chromium npm bubblewrap "
                    "(README, set-up)")
    log = tmp_path / "calls.log"
    for name in ("make", "apt-get", "sudo"):
        _stub(tmp_path, name, log)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == ["make test", "make bench BENCH_ARGS=--budget-seconds 600"]
    assert done.stdout.splitlines()[-1].startswith("CI: make test and make bench passed")
    assert done.stderr == ""


def test_ci_installs_the_packages_the_readme_names():
    readme_apt = [c for c in bash_commands(README) if "apt-get install" in c]
    assert readme_apt == ["sudo apt-get install -y chromium npm bubblewrap"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^packages=\(chromium npm bubblewrap\)$", ci, re.M)
    assert re.search(r"^command -v bwrap .*missing\+=\(bubblewrap\)$", ci, re.M)


# --- README -----------------------------------------------------------------------------------------


def test_readme_starts_with_the_two_commands_then_the_notebooks_then_the_layout():
    commands = bash_commands(README)
    assert commands[:2] == ["make book", "make test"]
    headings = re.findall(r"^## (.+)$", README, re.M)
    assert headings == ["Running the notebooks", "What is where"]
    assert README.index("make lab") > README.index("make test") and README.index("make lab") > README.index(
        "## Running the notebooks")


# Every command the README shows, and where it is exercised.
EXERCISED = {
    "make book": "tests/test_browser.py builds the book with the same command (checked against the Makefile)",
    "make test": ".ci/run runs it",
    "git clone https://github.com/seqcourse/seqcourse": "CI starts from a clean clone; the address is _config.yml's",
    "cd seqcourse": "the folder git clone creates",
    "sudo apt-get install -y chromium npm bubblewrap": ".ci/run installs the same packages (test above)",
    "make lab": "test_make_lab_starts_jupyterlab",
    "make bench": ".ci/run runs it; tests/test_bench.py tests the command behind it",
    "make exercises": "tests/test_exercises.py runs its command (generate --check)",
}


def test_every_readme_command_is_exercised():
    inline_make = set(re.findall(r"`(make [a-z]+)`", README))
    commands = set(bash_commands(README)) | inline_make
    assert commands <= set(EXERCISED), f"README commands nobody runs: {sorted(commands - set(EXERCISED))}"
    assert commands >= {c for c in EXERCISED if c.startswith("make ")}
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M) and re.search(r"^make bench\b", ci, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert "$(PY) -m seqcourse generate solutions exercises" in makefile
    assert "$(PY) -m seqcourse bench --skip-models $(BENCH_ARGS)" in makefile
    assert "$(PY) -m seqcourse bench --skip-notebooks --models-json _build/bench/models.json $(MODEL_BENCH_ARGS)" \
        in makefile
    assert "GLIBC_TUNABLES=$(BENCH_TUNABLES) $(PY) -m seqcourse bench --skip-notebooks $(MODEL_BENCH_ARGS)" in makefile


def test_readme_and_config_name_the_same_repository():
    addresses = set(re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", README))
    assert addresses == {URL.rstrip("/")}, "the README and _config.yml's repository.url must agree"
    repo = URL.rstrip("/").removeprefix("https://github.com/")
    assert f"cd {repo.split('/')[1]}" in bash_commands(README)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_lab_starts_jupyterlab(tmp_path):
    """`make lab` as the README runs it (the environment taken as up to date), with a throwaway
    Jupyter configuration that sets the port and keeps it from opening a browser."""
    port, token = _free_port(), "seqcourse-test"
    config = tmp_path / "config"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(json.dumps({
        "ServerApp": {"open_browser": False, "port": port, "ip": "127.0.0.1", "port_retries": 0,
                      "allow_root": True},  # CI containers run as root
        "IdentityProvider": {"token": token}}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    lab = subprocess.Popen(["make", "--no-print-directory", "-o", ".venv/.installed", "lab"], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and lab.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=5) as reply:
                    status, page = reply.status, reply.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert status == 200, f"JupyterLab did not answer on port {port}: {lab.stderr.read1().decode()[-2000:]}"
        assert "JupyterLab" in page
    finally:
        if lab.poll() is None:
            os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(timeout=30)


# --- Offline assets ------------------------------------------------------------------------------------


def test_local_mathjax_3_and_widget_scripts_are_configured_and_stay_out_of_git():
    sphinx = CONFIG["sphinx"]
    assert sphinx["local_extensions"] == {"offline_assets": "book/_ext", "unique_scripts": "book/_ext",
                                          "accessible_theme": "book/_ext", "figure_alt": "book/_ext"}
    config = sphinx["config"]
    assert config["html_static_path"] == ["book/_static"]
    assert config["mathjax_path"] == "vendor/mathjax/es5/tex-mml-chtml.js"
    assert list(config["nb_ipywidgets_js"]) == [
        "vendor/requirejs/require.js", "widgets-offline.js", "vendor/html-manager/dist/embed-amd.js"]
    assert not any("://" in path for path in config["nb_ipywidgets_js"])
    assert "book/_static/vendor/" in (ROOT / ".gitignore").read_text().splitlines()
    source = (ROOT / "book" / "_ext" / "offline_assets.py").read_text()
    assert re.search(r'"mathjax@3\.\d+\.\d+"', source), "the book pins MathJax 3 (4 fetches fonts from a CDN)"


def _fake_npm(folder: Path, files: dict[str, bytes]) -> bytes:
    """An `npm` on PATH whose `npm pack` writes a tarball of ``files`` (under package/) into the
    current folder; returns the tarball's bytes."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    (folder / "pkg.tgz").write_bytes(buffer.getvalue())
    npm = folder / "npm"
    npm.write_text(f"#!/bin/sh\n/bin/cp {shlex.quote(str(folder / 'pkg.tgz'))} ./pkg-1.0.0.tgz\n")
    npm.chmod(0o755)
    return buffer.getvalue()


def test_vendor_fetch_keeps_the_listed_files_checks_integrity_and_then_needs_no_npm(
        offline_assets, tmp_path, monkeypatch):
    bin_dir, vendor = tmp_path / "bin", tmp_path / "vendor"
    bin_dir.mkdir()
    tarball = _fake_npm(bin_dir, {"dist/tex.js": b"//js", "dist/font.woff": b"w", "README.md": b"#"})
    package = offline_assets.Package("pkg@1.0.0", offline_assets._integrity(tarball), ("dist/*.js", "dist/*.woff"))
    monkeypatch.setenv("PATH", str(bin_dir))
    assert offline_assets.fetch("pkg", package, vendor) is True
    kept = sorted(p.relative_to(vendor / "pkg").as_posix() for p in (vendor / "pkg").rglob("*") if p.is_file())
    assert kept == [".fetched", "dist/font.woff", "dist/tex.js"]
    assert [p.name for p in vendor.iterdir()] == ["pkg"], "no temporary folder is left behind"

    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # cached: npm is not needed any more
    assert offline_assets.fetch("pkg", package, vendor) is False
    newer = offline_assets.Package("pkg@1.0.1", package.integrity, package.keep)
    with pytest.raises(offline_assets.VendorError, match="npm is not installed.*apt-get install -y npm"):
        offline_assets.fetch("pkg", newer, vendor)

    monkeypatch.setenv("PATH", str(bin_dir))
    forged = offline_assets.Package("pkg@1.0.1", "sha512-" + "A" * 86 + "==", package.keep)
    with pytest.raises(offline_assets.VendorError, match="does not match the pinned integrity"):
        offline_assets.fetch("pkg", forged, vendor)
    assert (vendor / "pkg" / "dist" / "tex.js").is_file(), "a failed fetch leaves the old copy in place"


def test_the_pinned_vendor_packages_are_fetched_for_the_book(offline_assets):
    offline_assets.fetch_all()
    for name, package in offline_assets.PACKAGES.items():
        stamp = (offline_assets.VENDOR / name / offline_assets.STAMP).read_text()
        assert stamp == f"{package.spec} {package.integrity}\n"
    mathjax = json.loads((offline_assets.VENDOR / "mathjax" / "package.json").read_text())
    assert mathjax["version"].startswith("3.")
    assert (offline_assets.VENDOR / "mathjax" / "es5" / "tex-mml-chtml.js").is_file()


def test_axe_core_is_fetched_for_the_browser_test_and_not_shipped_with_the_book(offline_assets):
    offline_assets.fetch_all(offline_assets.TEST_VENDOR, offline_assets.TEST_PACKAGES)
    axe = offline_assets.TEST_VENDOR / "axe-core"
    assert json.loads((axe / "package.json").read_text())["version"] == "4.14.1"
    assert (axe / "axe.min.js").is_file()
    assert "_build/" in (ROOT / ".gitignore").read_text().splitlines()
    assert not (offline_assets.VENDOR / "axe-core").exists(), "book/_static is copied into the book"


# --- Reading aids ----------------------------------------------------------------------------------------


def _markdown(entry: str) -> str:
    path = ROOT / f"{entry}.md"
    if path.is_file():
        return path.read_text()
    cells = json.loads((ROOT / f"{entry}.ipynb").read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def _math(text: str) -> str:
    """The TeX of a page's math, with single-character braces dropped (h_{t} reads as h_t)."""
    spans = re.findall(r"\$\$(.+?)\$\$|\$([^$\n]+?)\$", text, re.S)
    tex = "\n".join(a or b for a, b in spans)
    return re.sub(r"_\{(\w)\}", r"_\1", tex)


def _glossary_terms() -> list[str]:
    text = (ROOT / "book" / "glossary.md").read_text()
    terms = []
    for block in re.findall(r"```\{glossary\}\n(.*?)```", text, re.S):
        terms += [line[1:-1] for line in block.splitlines() if line.startswith("$") and line.endswith("$")]
    return terms


def test_reading_aids_are_in_the_table_of_contents():
    entries = toc_entries()
    for page in ("book/glossary", "book/troubleshooting", "book/instructors", "book/references"):
        assert page in entries
    troubleshooting = (ROOT / "book" / "troubleshooting.md").read_text()
    for heading in ("## No GPU", "## Binder runs out of memory", "## The kernel does not find `seqcourse`"):
        assert heading in troubleshooting


def test_every_glossary_symbol_is_one_the_book_uses():
    terms = _glossary_terms()
    assert len(terms) >= 30 and len(terms) == len(set(terms))
    assert {"h_t", "c_t", "W_h", "f_t", "A", "C", "\\Delta"} <= set(terms)
    used = "\n".join(_math(_markdown(entry)) for entry in toc_entries() if entry != "book/glossary")
    for term in terms:
        pattern = r"(?<![A-Za-z])" + re.escape(term) + r"(?![A-Za-z0-9{])"
        assert re.search(pattern, used), f"the glossary defines ${term}$, which no page of the book uses"


def test_the_book_writes_symbols_as_the_glossary_says():
    """Plain italic vectors and matrices, the step as a subscript: no \\mathbf h, no h^{(t)}."""
    for entry in toc_entries():
        if entry == "book/glossary":  # it names the forms it rules out
            continue
        tex = _math(_markdown(entry))
        for pattern, what in ((r"\\mathbf\{|\\boldsymbol\{|\\bm\{", "bold symbols"),
                              (r"\^\{\((t|s|k)\)\}", "the step as a superscript")):
            found = re.search(pattern, tex)
            assert not found, f"{entry} writes {what} ({found.group(0)}); see book/glossary.md"


def test_every_chapter_cites_the_original_papers():
    for entry in toc_entries():
        if re.fullmatch(r"book/\d\d_\w+", entry):
            assert re.search(r"\{cite(:[a-z]+)?\}`", _markdown(entry)), f"{entry} cites no paper"
