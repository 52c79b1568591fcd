"""The built site must work offline: no page loads a script, style, font, image or frame from another host."""

from __future__ import annotations

import re
from pathlib import Path

# an attribute or CSS url() that makes a browser fetch something: src=, href= of <link>, url(...), @import
FETCHING = re.compile(r"""<(?:script|img|iframe|source|audio|video|embed)\b[^>]*\bsrc=["']?(?P<src>[^"' >]+)"""
                      r"""|<link\b[^>]*\bhref=["']?(?P<href>[^"' >]+)"""
                      r"""|url\(\s*["']?(?P<url>[^"')\s]+)|@import\s+["'](?P<import>[^"']+)""", re.IGNORECASE)
REMOTE = re.compile(r"^(?:https?:)?//", re.IGNORECASE)
TEXT_SUFFIXES = {".html", ".css", ".js", ".xml", ".json"}


def remote_fetches(site: Path) -> list[str]:
    """'file: url' for each reference in the built site that a browser would fetch from the network."""
    found = []
    for path in sorted(site.rglob("*")):
        if path.suffix not in TEXT_SUFFIXES or not path.is_file():
            continue
        for match in FETCHING.finditer(path.read_text(encoding="utf-8", errors="replace")):
            url = next(group for group in match.groups() if group is not None)
            if REMOTE.match(url):
                found.append(f"{path.relative_to(site)}: {url}")
    return found
