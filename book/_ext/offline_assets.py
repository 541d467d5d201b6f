"""Sphinx extension: local copies of MathJax 3 and the ipywidgets embed scripts.

By default a Jupyter Book page loads MathJax and the widget manager from CDNs, so a book read
offline (or built into a sandbox) shows raw TeX and no widgets. This extension makes the build
fetch pinned copies from the npm registry once, with npm itself (``npm pack``), check each
tarball against its published sha512 integrity, and keep only the files a browser needs in
``book/_static/vendor/<name>/`` (ignored by git). ``_config.yml`` then points Sphinx at them
(``mathjax_path``, myst-nb's ``nb_ipywidgets_js``) and copies ``book/_static`` into the build.

Later builds reuse the copies (a stamp file names the exact package and integrity), so only the
first build on a machine needs the registry; with ``npm`` missing or the registry unreachable and
no copies yet, the build stops with a message that says so, rather than producing a book that
silently needs the internet.

The browser test (tests/test_browser.py) needs one package the book does not ship: axe-core,
the accessibility checker it injects into every page. It is pinned and fetched the same way
(``TEST_PACKAGES``), into ``_build/vendor/`` (ignored by git, never copied into the book).

Run as a script (``python book/_ext/offline_assets.py``) it fetches the book's copies without
building; ``--tests`` fetches the test's as well.
"""
from __future__ import annotations

import base64
import fnmatch
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[1] / "_static" / "vendor"
TEST_VENDOR = Path(__file__).resolve().parents[2] / "_build" / "vendor"
STAMP = ".fetched"


@dataclass(frozen=True)
class Package:
    """One npm package: ``spec`` (name@exact-version), its tarball's ``integrity`` as npm
    publishes it, and the glob patterns (relative to the tarball's ``package/``) to keep."""

    spec: str
    integrity: str
    keep: tuple[str, ...]


PACKAGES = {
    # MathJax 3 (not 4: version 4 fetches its fonts from a CDN). The combined TeX + MathML input,
    # CommonHTML output bundle, plus what it loads on demand: TeX extensions (autoload), the
    # CHTML web fonts, the context menu and its accessibility and speech components.
    "mathjax": Package(
        "mathjax@3.2.2",
        "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        ("LICENSE", "package.json", "es5/tex-mml-chtml.js", "es5/input/*", "es5/output/chtml/*",
         "es5/ui/*", "es5/a11y/*", "es5/sre/*"),
    ),
    # The ipywidgets 8 embed manager (widget models @jupyter-widgets/base 2.0, controls 2.0,
    # output 1.0 bundled), and the Font Awesome files it loads relative to itself.
    "html-manager": Package(
        "@jupyter-widgets/html-manager@1.0.15",
        "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        ("package.json", "dist/embed-amd.js", "dist/*.woff", "dist/*.woff2", "dist/*.ttf", "dist/*.eot",
         "dist/*.svg"),
    ),
    # RequireJS, which the embed manager uses to load its modules.
    "requirejs": Package(
        "requirejs@2.3.8",
        "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
        ("package.json", "require.js"),
    ),
}


# Fetched for the tests only (fetch_all(TEST_VENDOR, TEST_PACKAGES)), not part of the book.
TEST_PACKAGES = {
    # axe-core, the accessibility rules engine the browser test runs in every page (axe.min.js
    # defines window.axe; axe.run() returns the violations with their impact and nodes).
    "axe-core": Package(
        "axe-core@4.14.1",
        "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==",
        ("LICENSE", "package.json", "axe.min.js"),
    ),
}


class VendorError(RuntimeError):
    """The local copies are missing and cannot be fetched; the message says what to do."""


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _npm_pack(spec: str, into: Path, vendor: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise VendorError(
            f"npm is not installed, and the book needs a local copy of {spec} (fetched once into "
            f"{vendor}). Install Node.js's npm (Debian/Ubuntu: sudo apt-get install -y npm) and build again."
        )
    done = subprocess.run([npm, "pack", "--silent", "--prefer-offline", spec], cwd=into,
                          capture_output=True, text=True, timeout=600)
    tarballs = sorted(into.glob("*.tgz"))
    if done.returncode != 0 or len(tarballs) != 1:
        raise VendorError(
            f"`npm pack {spec}` failed (exit {done.returncode}); the first build on a machine needs the "
            f"npm registry, later builds reuse {vendor}.\n{done.stderr.strip()[-2000:]}"
        )
    return tarballs[0]


def fetch(name: str, package: Package, vendor: Path = VENDOR) -> bool:
    """Make ``vendor/name`` hold the kept files of ``package``; return True if it fetched them,
    False if the copy was already there. Raises VendorError when it cannot."""
    target = vendor / name
    stamp = f"{package.spec} {package.integrity}\n"
    if (target / STAMP).is_file() and (target / STAMP).read_text() == stamp:
        return False
    vendor.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=vendor, prefix=f".{name}-") as tmp:
        tmp = Path(tmp)
        tarball = _npm_pack(package.spec, tmp, vendor)
        data = tarball.read_bytes()
        if _integrity(data) != package.integrity:
            raise VendorError(f"{tarball.name} does not match the pinned integrity of {package.spec}")
        staged = tmp / name
        with tarfile.open(tarball) as archive:
            members = [m for m in archive.getmembers() if m.isfile() and any(
                fnmatch.fnmatch(m.name.removeprefix("package/"), pattern) for pattern in package.keep)]
            missing = [p for p in package.keep
                       if not any(fnmatch.fnmatch(m.name.removeprefix("package/"), p) for m in members)]
            if missing:
                raise VendorError(f"{package.spec} has no files matching {missing}")
            archive.extractall(tmp / "unpacked", members=members, filter="data")
        (tmp / "unpacked" / "package").rename(staged)
        (staged / STAMP).write_text(stamp)
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    return True


def fetch_all(vendor: Path = VENDOR, packages: dict[str, Package] = PACKAGES) -> list[str]:
    """Fetch every package of ``packages`` that is not cached in ``vendor`` yet; return the names
    fetched."""
    return [name for name, package in packages.items() if fetch(name, package, vendor)]


def _on_config_inited(app, config) -> None:
    from sphinx.errors import ExtensionError
    from sphinx.util import logging

    try:
        fetched = fetch_all()
    except VendorError as error:
        raise ExtensionError(str(error)) from error
    if fetched:
        logging.getLogger(__name__).info("offline_assets: fetched %s into %s", ", ".join(fetched), VENDOR)


def setup(app):
    # Before Sphinx checks html_static_path (priority 800), so the vendor folder exists by then.
    app.connect("config-inited", _on_config_inited, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    try:
        names = fetch_all()
        if "--tests" in sys.argv[1:]:
            names += fetch_all(TEST_VENDOR, TEST_PACKAGES)
    except VendorError as error:
        sys.exit(str(error))
    print(f"fetched {', '.join(names)}" if names else "all local copies present")
