"""Shared checks of the report tests: the embedded images of a report.html."""

from __future__ import annotations

import base64
import re
import struct

_IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_sizes(html: str) -> list[tuple[int, int]]:
    """(width, height) of every embedded PNG, read from its IHDR chunk."""
    sizes = []
    for payload in _IMG.findall(html):
        data = base64.b64decode(payload, validate=True)
        assert data.startswith(PNG_SIGNATURE)
        width, height = struct.unpack(">II", data[16:24])
        sizes.append((width, height))
    return sizes


def external_references(html: str) -> list[str]:
    """Every src/href that is not a data URI or an in-page anchor."""
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    return [r for r in refs if not r.startswith(("data:", "#"))]
