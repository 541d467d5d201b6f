"""Sphinx extension: each figure a notebook stored gets the alt text stored with it.

myst-nb writes a notebook's PNG outputs as images whose alt text is, unless the cell's metadata
sets one (``mystnb: image: alt:``), the image's own file name. A course notebook stores each
figure's description in the output's metadata, ``metadata["image/png"]["alt"]``
(seqcourse.viz.alt_text, set up by ``import seqcourse`` in the kernel), which myst-nb does not read.
After a notebook is read this gives every image from its outputs that alt text, matching image
to output by content (the SHA-256 of the image's bytes), and leaves alt text the cell set alone.
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from docutils import nodes

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")


def stored_alt_texts(notebook: dict) -> dict[str, str]:
    """{SHA-256 of an image output's bytes: the alt text in that output's metadata}."""
    texts = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            for mime in IMAGE_TYPES:
                data, alt = output.get("data", {}).get(mime), output.get("metadata", {}).get(mime, {}).get("alt")
                if isinstance(data, str) and isinstance(alt, str) and alt.strip():
                    texts[hashlib.sha256(base64.b64decode(data)).hexdigest()] = alt.strip()
    return texts


def _add_alt_texts(app, doctree) -> None:
    source = Path(app.env.doc2path(app.env.docname))
    if source.suffix != ".ipynb":
        return
    texts = stored_alt_texts(json.loads(source.read_text()))
    for image in doctree.findall(nodes.image):
        if image.get("alt"):
            continue
        path = Path(app.srcdir) / image["uri"].lstrip("/")
        if not path.is_file():
            path = source.parent / image["uri"]
        if path.is_file():
            alt = texts.get(hashlib.sha256(path.read_bytes()).hexdigest())
            if alt:
                image["alt"] = alt


def setup(app):
    app.connect("doctree-read", _add_alt_texts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
