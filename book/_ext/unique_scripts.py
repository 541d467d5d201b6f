"""Sphinx extension: write each inline ``<script>`` of a page once.

With this toolchain (Sphinx 7.4, sphinx-thebe 0.3.1, sphinx-togglebutton 0.4.5) the inline
scripts those extensions add end up twice in every page: Sphinx registers an inline script under
the file name ``None`` and re-adds it from its registry under ``""``, and the two do not compare
equal. sphinx-thebe's script declares ``const THEBE_JS_URL``, so the second copy throws
"Identifier 'THEBE_JS_URL' has already been declared" in the reader's browser on every page.
This drops the repeats of identical inline scripts (scripts with a file are left as they are).
"""
from __future__ import annotations


def _drop_repeated_inline_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        if not getattr(script, "filename", None) and "body" in attributes:
            key = tuple(sorted(attributes.items()))
            if key in seen:
                continue
            seen.add(key)
        unique.append(script)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", _drop_repeated_inline_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
