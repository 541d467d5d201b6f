"""Sphinx extension: the theme's markup, made usable by every reader (checked by axe-core in
tests/test_browser.py).

- One search field, where sphinx-book-theme puts it (the primary sidebar). pydata-sphinx-theme,
  which sphinx-book-theme builds on, adds a second one to a header navbar unless
  ``navbar_persistent`` is set; sphinx-book-theme empties that option in its theme.conf, but
  pydata's default is applied to ``html_theme_options`` first and wins. Setting it to ``[]`` here
  (unless the configuration sets it) leaves the header out, as sphinx-book-theme intends: the
  sidebar keeps its search field (book/_static/readers.css keeps it in view), and the article
  header its search icon, which the theme shows only on narrow screens, where the sidebar is a
  drawer.
- Citations: docutils writes a bibliography as ``<div role="list">`` holding
  ``<div role="doc-biblioentry">`` items, a role ARIA 1.3 deprecates and does not allow on a
  ``div``, so a list with no list items (axe: aria-required-children, critical). The translator
  below writes them as ``role="listitem"``.

- The table of contents: a chapter with sections (5, 8) gets a toggle, a ``<summary>`` holding only
  an icon, so a screen reader announces nothing (axe: summary-name, serious). Each such summary is
  named "Sections of this chapter" after the build, and the navigation shows two levels open
  (``show_navbar_depth``), so the section links are on the page and reachable with Tab (the theme
  draws the toggle's focus ring on its icon).

The components whose markup changes live in book/_templates (``templates_path`` in _config.yml):
``search-button-field.html`` (its accessible name is the visible word "Search"; the shortcut is
``aria-keyshortcuts``), ``theme-switcher.html`` (the mode icons are decorative, so the name is
"Color mode") and ``navbar-logo.html`` (the title link to the first page gets a navigation
landmark).
"""
from __future__ import annotations

from pathlib import Path

from sphinx.writers.html5 import HTML5Translator

TOGGLE = '<summary><span class="toctree-toggle" role="presentation">'
NAMED_TOGGLE = '<summary aria-label="Sections of this chapter"><span class="toctree-toggle" role="presentation">'


class AccessibleHTML5Translator(HTML5Translator):
    """Sphinx's HTML5 translator with citations written as list items of their list.
    pydata-sphinx-theme adds its own mixin on top of the translator registered here."""

    def visit_citation(self, node):
        if not isinstance(node.previous_sibling(), type(node)):
            self.body.append('<div role="list" class="citation-list">\n')
        self.body.append(self.starttag(node, "div", classes=[node.tagname], role="listitem"))


def _one_search_field(app, config) -> None:
    config.html_theme_options.setdefault("navbar_persistent", [])
    config.html_theme_options.setdefault("show_navbar_depth", 2)


def _name_toc_toggles(app, exception) -> None:
    """Give every icon-only toggle of the table of contents an accessible name (module docstring)."""
    if exception is not None or app.builder.format != "html":
        return
    for page in Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        if TOGGLE in text:
            page.write_text(text.replace(TOGGLE, NAMED_TOGGLE), encoding="utf-8")


def setup(app):
    app.connect("config-inited", _one_search_field)
    app.connect("build-finished", _name_toc_toggles)
    app.set_translator("html", AccessibleHTML5Translator, override=True)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
