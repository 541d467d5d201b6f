"""The book's table of contents as the tests read it (shared by test_book, test_browser, test_reader)."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_entries() -> list[str]:
    """Every file named in _toc.yml (root first), without suffix, relative to the repository root."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    entries = [toc["root"]]

    def walk(items):
        for item in items:
            if "file" in item:
                entries.append(item["file"])
            for key in ("chapters", "sections"):
                walk(item.get(key, []))

    walk(toc.get("parts", []))
    walk(toc.get("chapters", []))
    return entries
