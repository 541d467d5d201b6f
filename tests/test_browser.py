"""The rendered book, read the way a reader reads it: every page opened in a real browser.

The book is built once per session (the ``built_book`` fixture in conftest.py, with the command
``make book`` runs), served from a local port, and every HTML page the build produced is opened in
headless Chromium (Debian's ``chromium`` driven by playwright; no browser download). Every request
that would leave the machine is blocked and recorded. For each page the checker reports:

- ``page error`` / ``console error``: an uncaught exception or a console error (those caused by
  a blocked outside request are reported once, as ``outside request``);
- ``missing file``: a local request answered with an HTTP error (a script, style, font ...);
- ``MathJax``: a page with math whose MathJax did not start, or a MathJax other than version 3;
- ``untypeset math`` / ``math error`` / ``raw TeX``: a math element MathJax left alone, TeX that
  MathJax could not typeset, or TeX delimiters (``\\(``, ``$$``, ``$x_t$`` ...) left in the text
  outside code;
- ``broken image``: an image that did not load;
- ``broken link``: a link inside the site to a missing file or a missing ``#anchor``;
- ``outside request``: any request to another host;
- ``widget``: a stored widget view that did not render, or rendered as an error.

Then it asks whether every reader can use the page:

- ``accessibility``: a critical or serious violation found by axe-core (its default WCAG 2 A/AA
  and best-practice rules), injected into the page from a pinned copy that the tests fetch from
  npm like the book's MathJax (``TEST_PACKAGES`` in book/_ext/offline_assets.py, into
  ``_build/vendor/``). The count of violating nodes per impact is kept for every page;
  ``test_axe_finds_nothing_critical_or_serious_on_any_page`` prints them (``pytest -s``) and saves
  them as ``_build/browser/axe.json``. No rule is excluded: the theme's markup that failed is fixed
  (book/_ext/accessible_theme.py, book/_templates).
- ``alt text``: a content image whose alt text is a file name or path (Sphinx's default) or a
  single word, which says nothing about the figure;
- ``dark mode``: with the reader's system set to dark (the book follows it), a content image
  with a transparent background and dark ink drawn on a dark backdrop;
- ``phone``: at 390 x 844 CSS pixels, a page wider than the screen (it scrolls sideways), or
  code, a table, display math or a figure wider than its box when that box does not scroll;
- ``search field``: more than one of the theme's search fields on a page;
- ``keyboard`` (on the pages asked for; the book tabs through ``KEYBOARD_PAGE``): pressing Tab
  from the top must reach every visible link, button and form or widget control, in document
  order, each showing a visible focus ring.

It also saves the first screen of every page built from ``book/`` as
``_build/browser/<page>.png`` and, on a phone, ``_build/browser/phone/<page>.png`` (``_build/``
is ignored by git). ``test_the_checker_catches_each_kind_of_fault`` runs the same checker on
small synthetic pages, one per fault, so a checker that stopped seeing a fault fails too.

Needs Chromium at /usr/bin/chromium: ``sudo apt-get install -y chromium`` (README, set-up), and
npm for the first fetch of axe-core (as for the book's MathJax). Without them these tests fail,
with that message; they never skip.
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import html.parser
import http.server
import json
import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml

from book_toc import toc_entries

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
SCREENSHOTS = ROOT / "_build" / "browser"
PHONE_SCREENSHOTS = SCREENSHOTS / "phone"
AXE = ROOT / "_build" / "vendor" / "axe-core" / "axe.min.js"  # offline_assets.TEST_PACKAGES
KEYBOARD_PAGE = "book/04_convolutions.html"  # a chapter with sliders and toggle buttons: tabbed through
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
INSTALL_HINT = ("Install it with `sudo apt-get install -y chromium` (the README's set-up; .ci/run does it "
                "in CI). The browser test needs it and does not skip.")
NOT_PAGES = ("_static", "_sources", "_images")  # asset folders of a Sphinx build
_REDIRECT = re.compile(r'<meta\s+http-equiv="refresh"\s+content="\d+;\s*url=([^"]+)"', re.IGNORECASE)
WAIT_MS = 20_000

# --- In the page: what the checker asks the browser. -------------------------------------------

# MathJax: a page with math loads it (deferred, so it has run by the load event); wait for its
# first typesetting pass. Returns null on a page without MathJax.
_MATHJAX = """async (waitMs) => {
  if (!document.querySelector('script[src*="mathjax"]')) return null;
  const mj = window.MathJax;
  if (!mj || !mj.startup || !mj.startup.promise) return {started: false};
  const timeout = new Promise(resolve => setTimeout(() => resolve('timeout'), waitMs));
  const done = await Promise.race([mj.startup.promise.then(() => 'done'), timeout]);
  return {started: done === 'done', version: mj.version};
}"""

# Math elements (Sphinx writes span.math / div.math), MathJax's error nodes, and TeX left in the
# text outside code and outside math elements.
_MATH = r"""() => {
  const RAW = /\\\(|\\\)|\\\[|\\\]|\\begin\{|\$\$|\$[^$\s][^$]*?(?:\\[A-Za-z]+|[_^])[^$]*?\$/;
  const maths = [...document.querySelectorAll('.math')];
  const untypeset = maths.filter(e => !e.querySelector('mjx-container'))
                         .map(e => e.textContent.trim().slice(0, 80));
  const errors = [...document.querySelectorAll('mjx-merror')]
                   .map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 80));
  const skip = 'pre, code, kbd, samp, script, style, textarea, mjx-container, .math';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode: n => n.parentElement && n.parentElement.closest(skip)
                       ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  const raw = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (RAW.test(n.textContent)) raw.push(n.textContent.trim().slice(0, 80));
  }
  return {count: maths.length, untypeset, errors, raw};
}"""

# Images: ask lazy ones to load now, wait for all to settle, report which have no pixels.
_IMAGES = """async (waitMs) => {
  const images = [...document.images];
  images.forEach(image => { image.loading = 'eager'; });
  const settled = images.map(image => image.complete ? null : new Promise(resolve => {
    image.addEventListener('load', resolve); image.addEventListener('error', resolve); }));
  await Promise.race([Promise.all(settled), new Promise(resolve => setTimeout(resolve, waitMs))]);
  return images.map(image => ({src: image.currentSrc || image.src,
                               ok: image.complete && image.naturalWidth > 0}));
}"""

# Widgets: the embed manager renders each stored view into a .widget-subarea just before the
# view's <script> tag.
_WIDGET_VIEWS = 'script[type="application/vnd.jupyter.widget-view+json"]'
_WIDGETS_RENDERED = """(selector) => [...document.querySelectorAll(selector)].every(script =>
  script.parentElement && script.parentElement.querySelector('.widget-subarea .jupyter-widgets'))"""
_WIDGETS = """(selector) => {
  const views = [...document.querySelectorAll(selector)];
  const rendered = views.map(script => script.parentElement &&
      script.parentElement.querySelector('.widget-subarea > .jupyter-widgets'));
  return {views: views.length,
          rendered: rendered.filter(view => view && view.getBoundingClientRect().height > 0).length,
          errors: document.querySelectorAll('.jupyter-widgets-error-widget').length};
}"""


# --- Every reader: accessibility, alt text, dark mode, phones, keyboard. -------------------------

# axe-core (injected from the pinned copy) on the whole page: the violations of its default rule
# set (WCAG 2.x A and AA, and best practices), as [{id, impact, help, nodes: [target]}].
_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                      nodes: v.nodes.map(n => n.target.join(' '))}));
}"""
IMPACTS = ("critical", "serious", "moderate", "minor")
FAILING_IMPACTS = ("critical", "serious")

# The images of the page's content (the theme's logos and icons are its business): src and alt.
_CONTENT_IMAGES = """() => [...(document.querySelector('main') || document.body).querySelectorAll('img')]
  .filter(image => image.getClientRects().length > 0)
  .map(image => ({src: (image.currentSrc || image.src).slice(0, 120), alt: image.getAttribute('alt')}))"""
# The theme's search fields (buttons that open the search dialog), by the part of the page they
# are in and whether a reader sees them on the first screen; the book wants one, in view, in the
# primary sidebar, where sphinx-book-theme puts it.
_SEARCH_FIELDS = """() => [...document.querySelectorAll('.search-button-field')].map(e => {
  const where = e.closest('.bd-sidebar-primary') ? 'primary sidebar' : e.closest('header') ? 'header' : 'elsewhere';
  const box = e.getBoundingClientRect(), middle = [box.left + box.width / 2, box.top + box.height / 2];
  const seen = box.width > 0 && e.contains(document.elementFromPoint(...middle));
  return seen ? where : where + ' (not in view)';
})"""
# Alt text that is a file name or path says nothing about what the figure shows.
_FILE_NAME_ALT = re.compile(r"(^|/)[^\s/]+\.(png|jpe?g|gif|svg|webp)$|^\.\.?/|^data:|^blob:", re.IGNORECASE)

# Dark mode: for each content image, its pixels (scaled into a small canvas) and the colour it is
# drawn on (its own background, or the first ancestor's that is not transparent). An image with a
# transparent background whose ink is dark is unreadable on a dark backdrop.
_DARK_FIGURES = """() => {
  const luminance = ([r, g, b]) => {
    const lin = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  };
  const backdrop = element => {
    for (let e = element; e; e = e.parentElement) {
      const m = getComputedStyle(e).backgroundColor.match(/[\\d.]+/g).map(Number);
      if (m.length < 4 || m[3] > 0.5) return m.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const root = document.querySelector('main') || document.body;
  return [...root.querySelectorAll('img')].filter(i => i.complete && i.naturalWidth > 0 && i.getClientRects().length)
    .map(image => {
      const scale = Math.min(1, 300 / image.naturalWidth);
      const canvas = document.createElement('canvas');
      canvas.width = Math.max(1, Math.round(image.naturalWidth * scale));
      canvas.height = Math.max(1, Math.round(image.naturalHeight * scale));
      const context = canvas.getContext('2d', {willReadFrequently: true});
      context.drawImage(image, 0, 0, canvas.width, canvas.height);
      let pixels;
      try { pixels = context.getImageData(0, 0, canvas.width, canvas.height).data; }
      catch (error) { return {src: image.src.slice(0, 120), unreadable: true}; }
      let transparent = 0, opaque = 0, dark = 0;
      for (let i = 0; i < pixels.length; i += 4) {
        if (pixels[i + 3] < 128) { transparent++; continue; }
        opaque++;
        if (luminance([pixels[i], pixels[i + 1], pixels[i + 2]]) < 0.1) dark++;
      }
      const total = pixels.length / 4;
      return {src: (image.currentSrc || image.src).slice(0, 120), transparent: transparent / total,
              darkInk: opaque ? dark / total : 0, backdrop: luminance(backdrop(image))};
    });
}"""
DARK_TRANSPARENT = 0.05  # an image with more transparent pixels than this shows its backdrop
DARK_INK = 0.002         # ... and with more dark pixels than this has dark text or lines
DARK_BACKDROP = 0.4      # ... which a backdrop darker than this (relative luminance) hides

# Phones: does the page scroll sideways, and what sticks out of the screen or out of its own box
# without a scroll bar of its own (code, tables, display math, figures)?
_PHONE = """() => {
  const width = document.documentElement.clientWidth;
  const overflow = e => getComputedStyle(e).overflowX;
  const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
                    (e.classList.length ? '.' + [...e.classList].slice(0, 2).join('.') : '') +
                    ' "' + e.textContent.trim().replace(/\\s+/g, ' ').slice(0, 40) + '"';
  const contained = e => { for (let a = e.parentElement; a && a !== document.body; a = a.parentElement)
                             if (overflow(a) !== 'visible' || getComputedStyle(a).position === 'fixed') return true;
                           return false; };
  // What sticks out past the right edge of the screen, not inside a box of its own (innermost).
  const past = [...document.querySelectorAll('body *')].filter(e => e.getClientRects().length
    && e.getBoundingClientRect().right > width + 1 && getComputedStyle(e).position !== 'fixed' && !contained(e));
  const sticking = past.filter(e => !past.some(o => o !== e && e.contains(o)))
                       .map(e => name(e) + ' reaches ' + Math.round(e.getBoundingClientRect().right) + ' px');
  // Wide content whose box neither scrolls nor sits in a box that does.
  const scrolls = e => ['auto', 'scroll'].includes(overflow(e));
  const inScroller = e => { for (let a = e.parentElement; a && a !== document.body; a = a.parentElement)
                              if (scrolls(a)) return true; return false; };
  const spilling = [...document.querySelectorAll('pre, table, mjx-container[display="true"], div.math, img')]
    .filter(e => e.getClientRects().length && e.scrollWidth > e.clientWidth + 1 && !scrolls(e) && !inScroller(e))
    .map(e => name(e) + ' is ' + e.scrollWidth + ' px wide in a ' + e.clientWidth + ' px box that does not scroll');
  return {scrollWidth: document.documentElement.scrollWidth, width,
          sticking: sticking.slice(0, 5), spilling: spilling.slice(0, 10)};
}"""
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

# A control's name as a reader hears it, roughly: aria-label, the text of aria-labelledby, its text.
_NAME = """const nameOf = e => {
  const by = (e.getAttribute('aria-labelledby') || '').split(' ').filter(Boolean)
               .map(id => (document.getElementById(id) || {textContent: ''}).textContent).join(' ');
  const text = e.getAttribute('aria-label') || by || e.textContent || e.getAttribute('title')
               || e.getAttribute('href') || '';
  return (e.getAttribute('role') || e.tagName.toLowerCase()) + ' "'
         + text.trim().replace(/\\s+/g, ' ').slice(0, 60) + '"';
};"""
# Keyboard: every control a reader can see, in document order (links, buttons, fields, widget
# controls, anything made focusable), numbered so that each Tab stop can be matched to it.
_FOCUSABLE = """() => {""" + _NAME + """
  const selector = 'a[href], button, input, select, textarea, summary, [tabindex], [contenteditable="true"]';
  const shown = e => e.getClientRects().length > 0 && getComputedStyle(e).visibility === 'visible'
                     && !e.closest('[inert], dialog:not([open]), [aria-hidden="true"]') && !e.disabled;
  const native = 'a[href], button, input, select, textarea, summary';  // a control even with tabindex="-1"
  const controls = [...document.querySelectorAll(selector)].filter(e => (e.tabIndex >= 0 || e.matches(native))
                                                                      && shown(e));
  controls.forEach((e, i) => { e.dataset.tabIndexInDocument = i; });
  return controls.map(nameOf);
}"""
# The element that has focus after a Tab: which control it is, whether it comes before the
# previous Tab stop in the document, its name, and whether it shows a focus ring (an outline or a
# box-shadow that is not transparent) on itself or, for an element whose only content is one child
# (the theme's table-of-contents toggles draw the ring on their icon), on that child.
_FOCUSED = """() => {""" + _NAME + """
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  const visible = color => !/^(transparent|rgba\\(.*,\\s*0\\))$/.test(color);
  const hasRing = el => {
    const style = getComputedStyle(el);
    const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 1 && visible(style.outlineColor);
    const shadow = style.boxShadow !== 'none' && visible(style.boxShadow.replace(/\\)\\s.*$/, ')'));
    return outline || shadow;
  };
  const only = e.children.length === 1 && e.textContent.trim() === e.children[0].textContent.trim() ? e.children[0] : null;
  const ring = hasRing(e) || Boolean(only && hasRing(only));
  const back = Boolean(window.lastTabStop && window.lastTabStop !== e
                       && (window.lastTabStop.compareDocumentPosition(e) & Node.DOCUMENT_POSITION_PRECEDING));
  window.lastTabStop = e;
  return {index: e.dataset.tabIndexInDocument === undefined ? null : Number(e.dataset.tabIndexInDocument),
          back, ring, name: nameOf(e)};
}"""
MAX_TABS = 800


@dataclasses.dataclass
class Problem:
    kind: str
    detail: str


@dataclasses.dataclass
class PageReport:
    """What the browser saw on one page."""

    page: str
    problems: list[Problem]
    math: int = 0
    images: int = 0
    internal_links: int = 0
    widget_views: int = 0
    external_links: list[str] = dataclasses.field(default_factory=list)
    axe: dict[str, int] = dataclasses.field(default_factory=dict)  # impact -> violating nodes
    alt_texts: list[str] = dataclasses.field(default_factory=list)
    dark_mode_images: int = 0  # content images whose pixels were read in dark mode
    phone_scroll_width: int = 0
    tab_stops: int = 0  # controls reached with Tab, when the keyboard was checked
    search_fields: list[str] = dataclasses.field(default_factory=list)  # where each one is
    seconds: float = 0.0

    def kinds(self) -> set[str]:
        return {problem.kind for problem in self.problems}


class _Ids(html.parser.HTMLParser):
    """Every id (and <a name>) in an HTML file: the anchors a #fragment can point at."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if value and (key == "id" or (key == "name" and tag == "a")):
                self.ids.add(value)


@functools.lru_cache(maxsize=None)
def _anchors(path: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(errors="replace"))
    return frozenset(parser.ids)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(directory: Path):
    """Serve ``directory`` on a free localhost port; yields the base URL (ending in /)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def site_pages(html_dir: Path) -> list[str]:
    """Every HTML page of a built site (relative paths), asset folders left out."""
    return sorted(p.relative_to(html_dir).as_posix() for p in html_dir.rglob("*.html")
                  if p.relative_to(html_dir).parts[0] not in NOT_PAGES)


def _check_links(hrefs: list[str], base: str, html_dir: Path, report: PageReport) -> None:
    for href in hrefs:
        parts = urlsplit(href)
        if parts.scheme not in ("http", "https"):
            continue  # mailto:, javascript: ...
        if not href.startswith(base):
            report.external_links.append(href)
            continue
        report.internal_links += 1
        relative = unquote(parts.path)[len(urlsplit(base).path):]
        target = html_dir / (relative or "index.html")
        if relative.endswith("/"):
            target = target / "index.html"
        if not target.is_file():
            report.problems.append(Problem("broken link", f"{href} (no file {relative or '/'})"))
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _anchors(target):
            report.problems.append(Problem("broken link", f"{href} (no anchor #{parts.fragment} in {relative})"))


def check_page(context, base: str, html_dir: Path, page_path: str, outside: list[str],
               screenshot: Path | None = None, wait_ms: int = WAIT_MS, phone_screenshot: Path | None = None,
               keyboard: bool = False) -> PageReport:
    """Open one page in ``context`` (whose routing records outside requests in ``outside``).
    After the checks below it runs the reader checks (check_accessibility, check_dark_mode,
    check_phone, and with ``keyboard`` check_keyboard).

    A redirect page (``<meta http-equiv="refresh">``, as the site's index.html) is not opened:
    its target is checked like a link, and the target is checked as a page of its own."""
    report = PageReport(page_path, [])
    start = time.perf_counter()
    redirect = _REDIRECT.search((html_dir / page_path).read_text(errors="replace"))
    if redirect:
        _check_links([urljoin(base + page_path, redirect.group(1))], base, html_dir, report)
        return report
    page = context.new_page()
    console, http_errors = [], {}
    page.on("console", lambda message: console.append(message) if message.type == "error" else None)
    page.on("pageerror", lambda error: report.problems.append(Problem("page error", str(error)[:300])))
    page.on("response", lambda response: http_errors.setdefault(response.url, response.status)
            if response.status >= 400 else None)
    first_outside = len(outside)
    try:
        page.goto(base + page_path, wait_until="load", timeout=60_000)

        mathjax = page.evaluate(_MATHJAX, wait_ms)
        if mathjax is not None and not mathjax["started"]:
            report.problems.append(Problem("MathJax", "the page loads MathJax, but it did not start or finish"))
        elif mathjax is not None and not str(mathjax.get("version", "")).startswith("3."):
            report.problems.append(Problem("MathJax", f"MathJax {mathjax.get('version')} is loaded; the book pins 3"))

        report.widget_views = page.evaluate(f"() => document.querySelectorAll('{_WIDGET_VIEWS}').length")
        if report.widget_views:
            with contextlib.suppress(Exception):  # a timeout is reported below, from the counts
                page.wait_for_function(_WIDGETS_RENDERED, arg=_WIDGET_VIEWS, timeout=wait_ms)
            widgets = page.evaluate(_WIDGETS, _WIDGET_VIEWS)
            if widgets["rendered"] < widgets["views"]:
                report.problems.append(Problem(
                    "widget", f"{widgets['views'] - widgets['rendered']} of {widgets['views']} stored widget "
                              "view(s) did not render"))
            if widgets["errors"]:
                report.problems.append(Problem("widget", f"{widgets['errors']} widget(s) rendered as an error"))

        math = page.evaluate(_MATH)
        report.math = math["count"]
        report.problems += [Problem("untypeset math", text) for text in math["untypeset"]]
        report.problems += [Problem("math error", text) for text in math["errors"]]
        report.problems += [Problem("raw TeX", text) for text in math["raw"]]

        images = page.evaluate(_IMAGES, wait_ms)
        report.images = len(images)
        report.problems += [Problem("broken image", image["src"][:200]) for image in images if not image["ok"]]

        _check_links(page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)"),
                     base, html_dir, report)
        if screenshot is not None:
            page.screenshot(path=str(screenshot))

        check_accessibility(page, report)
        if keyboard:
            check_keyboard(page, report)
        check_dark_mode(page, report)
        check_phone(page, report, phone_screenshot)
    finally:
        page.close()
    blocked = set(outside[first_outside:])
    report.problems += [Problem("outside request", url[:200]) for url in sorted(blocked)]
    report.problems += [Problem("missing file", f"{status} {url}") for url, status in sorted(http_errors.items())]
    for message in console:
        url = message.location.get("url", "")
        if url not in blocked and url not in http_errors:
            report.problems.append(Problem("console error", f"{message.text[:300]} ({url})"))
    report.seconds = time.perf_counter() - start
    return report


def check_accessibility(page, report: PageReport) -> None:
    """axe-core on the page: a problem for every critical or serious violation (each node), the
    node count per impact in ``report.axe``; the theme's search fields; and alt text on every
    content image that is neither a file name nor one word (axe accepts any alt text; a path says
    nothing about the figure)."""
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate(_AXE)
    report.axe = {impact: sum(len(v["nodes"]) for v in violations if v["impact"] == impact) for impact in IMPACTS}
    report.problems += [Problem("accessibility", f"{v['id']} ({v['impact']}): {v['help']}: {node}")
                        for v in violations if v["impact"] in FAILING_IMPACTS for node in v["nodes"]]
    report.search_fields = page.evaluate(_SEARCH_FIELDS)
    if len(report.search_fields) > 1:
        report.problems.append(Problem("search field", f"{len(report.search_fields)} search fields: "
                                                       f"{', '.join(report.search_fields)}"))
    for image in page.evaluate(_CONTENT_IMAGES):
        alt = (image["alt"] or "").strip()
        report.alt_texts.append(alt)
        if image["alt"] is not None and (_FILE_NAME_ALT.search(alt) or (alt and len(alt.split()) < 2)):
            report.problems.append(Problem("alt text", f"{image['src']}: alt text {alt!r} does not say what it shows"))


def check_dark_mode(page, report: PageReport) -> None:
    """Switch the reader's system to dark (the book follows it) and check every content image: a
    transparent background with dark ink must not sit on a dark backdrop."""
    page.emulate_media(color_scheme="dark")
    try:
        if page.evaluate("() => 'theme' in document.documentElement.dataset"):  # the theme's pages
            page.wait_for_function("() => document.documentElement.dataset.theme === 'dark'", timeout=5000)
        images = page.evaluate(_DARK_FIGURES)
        report.dark_mode_images = sum(not image.get("unreadable") for image in images)
        for image in images:
            if image.get("unreadable"):
                report.problems.append(Problem("dark mode", f"{image['src']}: pixels could not be read"))
            elif (image["transparent"] > DARK_TRANSPARENT and image["darkInk"] > DARK_INK
                  and image["backdrop"] < DARK_BACKDROP):
                report.problems.append(Problem(
                    "dark mode", f"{image['src']}: {image['transparent']:.0%} transparent with dark ink, on a "
                                 f"backdrop of luminance {image['backdrop']:.2f}: unreadable"))
    finally:
        page.emulate_media(color_scheme="light")


def check_phone(page, report: PageReport, screenshot: Path | None = None) -> None:
    """Lay the page out on a phone's screen (390 x 844 CSS pixels): the page must not scroll
    sideways, and code, tables, display math and figures wider than the screen scroll inside
    their own box. Saves the phone's first screen to ``screenshot``."""
    page.set_viewport_size(PHONE)
    try:
        page.evaluate("() => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)))")
        phone = page.evaluate(_PHONE)
        report.phone_scroll_width = phone["scrollWidth"]
        if phone["scrollWidth"] > phone["width"] + 1:
            report.problems.append(Problem("phone", f"the page is {phone['scrollWidth']} px wide on a "
                                                    f"{phone['width']} px screen and scrolls sideways: "
                                                    + "; ".join(phone["sticking"])))
        report.problems += [Problem("phone", detail) for detail in phone["spilling"]]
        if screenshot is not None:
            page.evaluate("() => window.scrollTo(0, 0)")
            page.screenshot(path=str(screenshot))
    finally:
        page.set_viewport_size(DESKTOP)


def check_keyboard(page, report: PageReport) -> None:
    """Tab through the page from the top: every visible link, button and form or widget control
    must be reached, in document order, each showing a focus ring."""
    page.evaluate("() => { window.scrollTo(0, 0); document.activeElement && document.activeElement.blur(); }")
    controls = page.evaluate(_FOCUSABLE)
    reached, no_ring = set(), []
    for _ in range(min(MAX_TABS, 2 * len(controls) + 20)):
        page.keyboard.press("Tab")
        focused = page.evaluate(_FOCUSED)
        if focused is None or focused["index"] in reached:
            break  # focus left the page, or came round to the first control again
        if focused["back"]:
            report.problems.append(Problem("keyboard", f"Tab goes back up the page to {focused['name']!r}"))
        if focused["index"] is not None:
            reached.add(focused["index"])
        if not focused["ring"]:
            no_ring.append(focused["name"])
    report.tab_stops = len(reached)
    report.problems += [Problem("keyboard", f"no visible focus ring on {name!r}") for name in no_ring]
    missed = [name for index, name in enumerate(controls) if index not in reached]
    report.problems += [Problem("keyboard", f"Tab never reaches {name!r}") for name in missed]


def check_site(browser, html_dir: Path, pages: list[str], screenshots: dict[str, Path] | None = None,
               wait_ms: int = WAIT_MS, phone_screenshots: dict[str, Path] | None = None,
               keyboard: frozenset[str] = frozenset()) -> dict[str, PageReport]:
    """Serve ``html_dir`` and check each page of ``pages`` in a fresh browser context that lets
    only requests to the local server through. ``wait_ms`` bounds each wait (for MathJax, the
    widgets, the images) on a page; the pages in ``keyboard`` are also tabbed through."""
    screenshots, phone_screenshots = screenshots or {}, phone_screenshots or {}
    outside: list[str] = []
    with serve(html_dir) as base:
        context = browser.new_context(viewport=DESKTOP, service_workers="block", color_scheme="light")

        def route(route):
            if route.request.url.startswith(base):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", route)
        try:
            return {page: check_page(context, base, html_dir, page, outside, screenshots.get(page), wait_ms,
                                     phone_screenshots.get(page), page in keyboard) for page in pages}
        finally:
            context.close()


@pytest.fixture(scope="module")
def browser(offline_assets):
    offline_assets.fetch_all(offline_assets.TEST_VENDOR, offline_assets.TEST_PACKAGES)  # axe-core
    assert AXE.is_file(), f"axe-core was not fetched to {AXE}"
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium is not installed ({CHROMIUM} not found). {INSTALL_HINT}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed in this environment: `make test` installs requirements.txt")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site(built_book, browser):
    """The whole built book checked page by page: {page: PageReport}."""
    assert built_book.returncode == 0, built_book.log[-5000:]
    pages = site_pages(built_book.html)
    if SCREENSHOTS.exists():
        for old in SCREENSHOTS.glob("*.png"):
            old.unlink()
        for old in PHONE_SCREENSHOTS.glob("*.png"):
            old.unlink()
    PHONE_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = {page: SCREENSHOTS / f"{Path(page).stem}.png" for page in pages if page.startswith("book/")}
    phone = {page: PHONE_SCREENSHOTS / f"{Path(page).stem}.png" for page in pages if page.startswith("book/")}
    return check_site(browser, built_book.html, pages, shots, phone_screenshots=phone,
                      keyboard=frozenset({KEYBOARD_PAGE}))


def toc_pages() -> list[str]:
    """The HTML page of every _toc.yml entry."""
    return [f"{entry}.html" for entry in toc_entries()]


# --- The book --------------------------------------------------------------------------------------


def test_make_book_and_the_test_build_run_the_same_command():
    from conftest import BOOK_BUILD_ARGS

    recipe = (ROOT / "Makefile").read_text().split("\nbook:", 1)[1].split("\n\n", 1)[0]
    assert f"jupyter-book {' '.join(BOOK_BUILD_ARGS)}\n" in recipe + "\n", recipe


def test_every_page_reads_right_in_a_browser(site):
    """No page error, raw TeX, broken image or link, outside request or unrendered widget; no
    critical or serious axe-core violation, alt text on every figure, figures legible in dark
    mode, no sideways scrolling on a phone, every control reached with Tab (on KEYBOARD_PAGE)."""
    summary = "\n".join(
        f"{page}: {r.seconds:.1f} s, {r.math} math, {r.images} images, {r.internal_links} internal links, "
        f"{r.widget_views} widget views, axe {r.axe}, {r.phone_scroll_width} px wide on a phone"
        for page, r in site.items())
    problems = [f"{page}: [{p.kind}] {p.detail}" for page, r in site.items() for p in r.problems]
    assert problems == [], "\n".join(problems) + "\n\nPages:\n" + summary
    assert set(toc_pages()) <= set(site), "a page of _toc.yml was not built"


def test_axe_finds_nothing_critical_or_serious_on_any_page(site):
    """axe-core's violations per page and impact (nodes), printed (pytest -s) and saved as
    _build/browser/axe.json; every page was checked, none has a critical or serious one."""
    opened = {page: r for page, r in site.items() if r.axe}  # all but redirect pages
    assert set(toc_pages()) <= set(opened), "axe did not run on every page of the book"
    table = {page: r.axe for page, r in opened.items()}
    (SCREENSHOTS / "axe.json").write_text(json.dumps(table, indent=1) + "\n")
    width = max(map(len, table))
    print("\naxe-core violations (nodes) per page:", " ".join(f"{impact:>9}" for impact in IMPACTS))
    for page, counts in table.items():
        print(f"  {page:<{width}}", " ".join(f"{counts[impact]:>9}" for impact in IMPACTS))
    print(f"  {'all pages':<{width}}", " ".join(f"{sum(c[impact] for c in table.values()):>9}" for impact in IMPACTS))
    assert {page: {i: c[i] for i in FAILING_IMPACTS if c[i]} for page, c in table.items()
            if any(c[i] for i in FAILING_IMPACTS)} == {}


def test_one_search_field_where_the_theme_puts_it(site):
    """sphinx-book-theme's search field sits in the primary sidebar, in view on a desktop's first
    screen (the theme scrolls the sidebar to the current page); the header had a second one."""
    assert {page: r.search_fields for page, r in site.items()
            if r.axe and r.search_fields != ["primary sidebar"]} == {}


def test_a_keyboard_reaches_every_control_of_a_chapter(site):
    """KEYBOARD_PAGE has sliders and toggle buttons; Tab reached every link, button and control."""
    report = site[KEYBOARD_PAGE]
    assert report.widget_views > 0, f"{KEYBOARD_PAGE} no longer has widgets: tab through another chapter"
    assert report.tab_stops >= 100, f"only {report.tab_stops} Tab stops on {KEYBOARD_PAGE}"
    assert [p for p in report.problems if p.kind == "keyboard"] == []


def test_the_browser_saw_the_math_the_figures_and_the_widgets(site):
    """Guards against a checker that passes because it looked at nothing."""
    pages = [site[page] for page in toc_pages()]
    assert sum(r.math for r in pages) >= 50
    assert sum(r.internal_links for r in pages) >= 100
    for page in toc_pages():
        source = ROOT / page.replace(".html", ".ipynb")
        if not source.is_file():
            continue
        notebook = json.loads(source.read_text())
        outputs = [o for c in notebook["cells"] for o in c.get("outputs", [])]
        stored_images = sum("image/png" in o.get("data", {}) for o in outputs)
        stored_views = sum("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
        if notebook["metadata"].get("widgets"):
            assert site[page].widget_views == stored_views, f"{page}: widget views missing from the page"
        assert site[page].images >= stored_images, f"{page}: fewer images than the notebook's figures"
        described = [alt for alt in site[page].alt_texts if alt]
        assert len(described) >= stored_images, f"{page}: a figure without alt text: {site[page].alt_texts}"
        assert site[page].dark_mode_images >= stored_images, f"{page}: figures not looked at in dark mode"
    assert all(site[page].phone_scroll_width > 0 for page in toc_pages()), "a page not laid out on a phone"


def test_a_screenshot_of_every_chapter_on_a_desktop_and_on_a_phone(site):
    from PIL import Image

    for page in toc_pages():
        for folder, viewport in ((SCREENSHOTS, DESKTOP), (PHONE_SCREENSHOTS, PHONE)):
            shot = folder / f"{Path(page).stem}.png"
            assert shot.is_file() and shot.stat().st_size > 10_000, f"no screenshot of {page} at {shot}"
            assert Image.open(shot).size == (viewport["width"], viewport["height"]), shot


def test_launch_and_repository_links_are_built_from_the_configured_repository(site):
    url = CONFIG["repository"]["url"].rstrip("/")
    repo = url.removeprefix("https://github.com/")
    branch = CONFIG["repository"]["branch"]
    binder = f"{CONFIG['launch_buttons']['binderhub_url'].rstrip('/')}/v2/gh/{repo}/{branch}"
    colab = f"{CONFIG['launch_buttons']['colab_url'].rstrip('/')}/github/{repo}/blob/{branch}/"
    for page, report in site.items():
        for link in report.external_links:
            host = urlsplit(link).hostname
            if host == "mybinder.org" or "binder" in (host or ""):
                assert link.startswith(binder), f"{page}: Binder link not built from repository.url: {link}"
            if host == "colab.research.google.com":
                assert link.startswith(colab), f"{page}: Colab link not built from repository.url: {link}"
            if link.startswith("https://github.com/") and "/issues/new" in link:
                assert link.startswith(url + "/issues/new"), f"{page}: issue link off the repository: {link}"
    for page in toc_pages():
        if (ROOT / page.replace(".html", ".ipynb")).is_file():  # a notebook: it has launch buttons
            notebook = page.replace(".html", ".ipynb")
            links = site[page].external_links
            assert f"{binder}?urlpath=lab/tree/{notebook}" in links, f"{page}: no Binder button"
            assert f"{colab}{notebook}" in links, f"{page}: no Colab button"
            assert url in links, f"{page}: no repository button"


# --- The checker itself ---------------------------------------------------------------------------

_PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
_MATHJAX_TAGS = ('<script>window.MathJax = {"options": {"processHtmlClass": "math"}}</script>'
                 '<script defer src="vendor/mathjax/es5/tex-mml-chtml.js"></script>')
# A page that follows the reader's dark mode, and a line of code wider than a phone.
_DARK_PAGE = "<style>@media (prefers-color-scheme: dark) { body { background: #121212; color: #eee } }</style>"
_LONG_LINE = "x = " + " + ".join(f"term_{i}" for i in range(40))


def _ink_png() -> bytes:
    """A 60 x 40 PNG: transparent, with a black bar (dark text or axes on no background)."""
    import io

    from PIL import Image

    image = Image.new("RGBA", (60, 40), (0, 0, 0, 0))
    image.paste((0, 0, 0, 255), (5, 15, 55, 25))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# Each synthetic page and the one kind of fault the checker must report on it.
SYNTHETIC = {
    "good.html": (_MATHJAX_TAGS + '<p>Inline <span class="math notranslate nohighlight">\\(h_t = \\tanh(a_t)\\)</span>'
                  ' and <code>$x_t$ in code is fine</code>.</p><img src="pixel.png" alt="">'
                  '<a href="other.html#there">a link</a> <a href="#here" id="here">here</a>', set()),
    "other.html": ('<p id="there">the target</p>', set()),
    "raw_tex.html": ("<p>The state \\(h_t\\) and $W_h$ shown raw.</p>", {"raw TeX"}),
    "untypeset.html": ('<p><span class="math notranslate nohighlight">\\(h_t\\)</span></p>', {"untypeset math"}),
    "tex_error.html": (_MATHJAX_TAGS + '<p><span class="math notranslate nohighlight">\\(\\frac{1}\\)</span></p>',
                       {"math error", "accessibility"}),  # MathJax's error box also fails colour contrast
    "no_mathjax.html": ('<script defer src="vendor/mathjax/es5/no-such-bundle.js"></script>'
                        '<p><span class="math notranslate nohighlight">\\(h_t\\)</span></p>',
                        {"MathJax", "missing file", "untypeset math"}),
    "broken_image.html": ('<img src="missing.png" alt="">', {"broken image", "missing file"}),
    "broken_link.html": ('<a href="nowhere.html">a</a> <a href="other.html#nowhere">b</a>', {"broken link"}),
    "outside.html": ('<link rel="stylesheet" href="https://cdn.example.org/theme.css">'
                     '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>',
                     {"outside request", "MathJax"}),  # a CDN MathJax, blocked, never starts
    "script_error.html": ("<script>document.body.undefinedFunction();</script>", {"page error"}),
    "console_error.html": ('<script>console.error("something went wrong")</script>', {"console error"}),
    "widget.html": ('<div><script type="application/vnd.jupyter.widget-view+json">'
                    '{"version_major": 2, "version_minor": 0, "model_id": "0123"}</script></div>', {"widget"}),
    # The reader checks.
    "no_alt.html": ('<img src="pixel.png"> <input type="text">', {"accessibility"}),  # image-alt, label
    "file_name_alt.html": ('<img src="pixel.png" alt="../_images/pixel.png">', {"alt text"}),
    "dark.html": (_DARK_PAGE + '<img src="ink.png" alt="A black bar on a transparent background">', {"dark mode"}),
    "dark_on_white.html": (_DARK_PAGE + '<img src="ink.png" alt="A black bar on a white background" '
                           'style="background: white">', set()),
    "wide.html": ('<div style="width: 800px">A line that is wider than a phone.</div>', {"phone"}),
    "clipped_code.html": (f'<div style="overflow: hidden"><pre style="overflow: visible">{_LONG_LINE}</pre></div>',
                          {"phone"}),
    "scrolling_code.html": (f'<pre tabindex="0" style="overflow-x: auto">{_LONG_LINE}</pre>', set()),
    "two_search_fields.html": ('<button class="search-button-field">Search</button>'
                               '<button class="search-button-field">Search</button>', {"search field"}),
    "no_focus_ring.html": ('<style>a:focus { outline: none }</style><a href="other.html">one</a>', {"keyboard"}),
    "tab_order.html": ('<a href="other.html">first</a> <a href="other.html" tabindex="1">second</a>',
                       {"keyboard", "accessibility"}),  # axe: tabindex
    "unreachable.html": ('<button tabindex="-1">Apply</button> <a href="other.html">next</a>', {"keyboard"}),
}
KEYBOARD_SYNTHETIC = frozenset({"good.html", "no_focus_ring.html", "tab_order.html", "unreachable.html"})


def test_the_checker_catches_each_kind_of_fault(browser, tmp_path, offline_assets):
    offline_assets.fetch_all()  # the local MathJax, as the build uses it
    (tmp_path / "vendor").symlink_to(offline_assets.VENDOR, target_is_directory=True)
    (tmp_path / "pixel.png").write_bytes(_PIXEL)
    (tmp_path / "ink.png").write_bytes(_ink_png())
    for name, (body, _) in SYNTHETIC.items():
        (tmp_path / name).write_text(f'<!DOCTYPE html><html lang="en"><head><title>{name}</title></head>'
                                     f"<body>{body}</body></html>")
    reports = check_site(browser, tmp_path, list(SYNTHETIC), wait_ms=3000, keyboard=KEYBOARD_SYNTHETIC)
    assert reports["good.html"].math == 1 and reports["good.html"].images == 1
    assert reports["good.html"].internal_links == 2
    wrong = {name: reports[name].problems for name, (_, expected) in SYNTHETIC.items()
             if reports[name].kinds() != expected}
    assert wrong == {}
    assert len(reports["broken_link.html"].problems) == 2
    assert {p.detail for p in reports["outside.html"].problems if p.kind == "outside request"} == {
        "https://cdn.example.org/theme.css", "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"}
    # The reader checks: what each one saw, so that one that stopped looking fails.
    assert set(reports["good.html"].axe) == set(IMPACTS)
    assert reports["good.html"].axe["critical"] == reports["good.html"].axe["serious"] == 0
    assert {p.detail.split(" ")[0] for p in reports["no_alt.html"].problems} == {"image-alt", "label"}
    assert reports["no_alt.html"].axe["critical"] == 2
    assert reports["good.html"].phone_scroll_width == PHONE["width"]
    assert reports["dark_on_white.html"].dark_mode_images == 1
    assert reports["wide.html"].phone_scroll_width > PHONE["width"]
    assert "pre" in reports["clipped_code.html"].problems[0].detail
    assert reports["two_search_fields.html"].search_fields == ["elsewhere", "elsewhere"]
    assert reports["good.html"].tab_stops == 3, "two links and the math (MathJax makes it focusable) in good.html"
    keyboard = {name: [p.detail for p in reports[name].problems if p.kind == "keyboard"]
                for name in ("no_focus_ring.html", "tab_order.html", "unreachable.html")}
    assert keyboard == {"no_focus_ring.html": ["no visible focus ring on 'a \"one\"'"],
                        "tab_order.html": ["Tab goes back up the page to 'a \"first\"'"],
                        "unreachable.html": ["Tab never reaches 'button \"Apply\"'"]}


def test_no_request_leaves_the_machine_even_for_links_followed_by_scripts(browser, tmp_path):
    """A fetch() issued by a page script is blocked and recorded like any other request."""
    (tmp_path / "fetch.html").write_text(
        '<!DOCTYPE html><html lang="en"><head><title>fetch</title></head><body>'
        "<script>fetch('https://example.org/data.json').catch(() => {});</script></body></html>")
    report = check_site(browser, tmp_path, ["fetch.html"])["fetch.html"]
    assert [p.kind for p in report.problems] == ["outside request"]
    assert re.fullmatch(r"https://example\.org/data\.json", report.problems[0].detail)
