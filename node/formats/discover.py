"""Which files of a path to load, and the subject each belongs to.

Layouts (PATH relative names are the files' labels in reports):

``PATH/<subject>/<file>``
    a folder per subject; the folder name is the subject's external id;
``PATH/<finger>_<impression>.<ext>``
    FVC layout: the finger id is the subject (``101_3.tif`` belongs to ``101``); a loose file
    not named so is its own subject (its stem);
``PATH`` a single file
    its stem is the subject; a single file of no loadable kind is an error.

A file is loaded when it is an image (by suffix), an ANSI/NIST-ITL transaction (``.an2``,
``.eft``, ``.nist``) or an ISO/IEC 19794-2 record (by suffix or magic); anything else
(notes, checksums) is passed over. Files are listed in sorted order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from node.errors import NodeError, NotFoundError
from node.formats.ansi_nist import SUFFIXES as NIST_SUFFIXES
from node.formats.iso import is_template_file

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm"})

#: ``<finger>_<impression>.<ext>`` as FVC names its files.
FVC_NAME = re.compile(r"^(?P<finger>[^_/]+)_(?P<impression>\d+)$")


class UnsupportedFileError(NodeError):
    """PATH is a single file of no loadable kind (exit 3, as for a rejected file)."""

    exit_code = 3
    default_reason = "unsupported_file"


class FileKind(StrEnum):
    IMAGE = "image"
    ISO_TEMPLATE = "iso_template"
    ANSI_NIST = "ansi_nist"


@dataclass(frozen=True)
class SourceFile:
    path: Path
    label: str  # relative to the loaded PATH (or the file name)
    subject: str
    kind: FileKind


def _kind(path: Path) -> FileKind | None:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return FileKind.IMAGE
    if path.suffix.lower() in NIST_SUFFIXES:
        return FileKind.ANSI_NIST
    if is_template_file(path):
        return FileKind.ISO_TEMPLATE
    return None


def _subject_of_loose(path: Path) -> str:
    match = FVC_NAME.match(path.stem)
    return match["finger"] if match else path.stem


def discover(root: Path) -> list[SourceFile]:
    """The loadable files under ``root``; raises NotFoundError when it does not exist."""
    if root.is_file():
        kind = _kind(root)
        if kind is None:  # named on its own, it is not passed over silently
            raise UnsupportedFileError(
                f"{root.name}: not an image ({', '.join(sorted(IMAGE_SUFFIXES))}), an "
                f"ANSI/NIST-ITL transaction ({', '.join(sorted(NIST_SUFFIXES))}) or an "
                "ISO/IEC 19794-2 record"
            )
        return [SourceFile(root, root.name, root.stem, kind)]
    if not root.is_dir():
        raise NotFoundError(f"{root} is neither a file nor a directory", reason="not_a_directory")
    found: list[SourceFile] = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            for path in sorted(p for p in entry.iterdir() if p.is_file()):
                kind = _kind(path)
                if kind is not None:
                    label = str(path.relative_to(root))
                    found.append(SourceFile(path, label, entry.name, kind))
        elif entry.is_file():
            kind = _kind(entry)
            if kind is not None:
                found.append(SourceFile(entry, entry.name, _subject_of_loose(entry), kind))
    return found
