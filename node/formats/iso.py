"""ISO/IEC 19794-2:2005 finger minutiae records (files ``.fmr``/``.iso``/``.ist``, or sniffed).

A file is a template file when its suffix says so or when it starts with the record's format
identifier ``FMR\\0``; :func:`read_templates` returns every finger view it holds (a record may
carry several fingers of one subject).
"""

from __future__ import annotations

from pathlib import Path

from matcher.fingerprint.iso19794_2 import MAGIC, decode_all
from matcher.fingerprint.template import FingerprintTemplate

#: Suffixes of ISO/IEC 19794-2 record files in the field.
TEMPLATE_SUFFIXES = frozenset({".fmr", ".iso", ".ist"})


def is_template_file(path: Path) -> bool:
    """Whether ``path`` holds an ISO/IEC 19794-2 record (by suffix, else by its magic)."""
    if path.suffix.lower() in TEMPLATE_SUFFIXES:
        return True
    with path.open("rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def read_templates(data: bytes) -> list[FingerprintTemplate]:
    """Every finger view of one record; raises ``TemplateFormatError`` with a reason."""
    return decode_all(data)
