"""Which files of a path to load, and the subject each belongs to.

Layouts (PATH relative names are the files' labels in reports):

``PATH/<subject>/<file>``
    a folder per subject; the folder name is the subject's external id;
``PATH/<finger>_<impression>.<ext>``
    FVC layout: the finger id is the subject (``101_3.tif`` belongs to ``101``); a loose file
    not named so is its own subject (its stem);
``PATH`` a single file
    its stem is the subject; a single file of no loadable kind is an error.

A file is loaded when it is an image (by suffix: every container the decoder reads,
:data:`~matcher.imageio.IMAGE_SUFFIXES`), an ANSI/NIST-ITL transaction (``.an2``, ``.eft``,
``.nist``) or an ISO/IEC 19794-2 record (by suffix or magic). Anything else (notes,
checksums) and folders below a subject's folder are passed over, and said so
(:attr:`Discovery.passed_over`); a file or subject folder that cannot be read is
:attr:`Discovery.unreadable`, which the load rejects. Files are listed in sorted order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from matcher.imageio import IMAGE_SUFFIXES
from node.errors import NodeError, NotFoundError
from node.formats.ansi_nist import SUFFIXES as NIST_SUFFIXES
from node.formats.iso import is_template_file

#: Why an entry under PATH was passed over (reasons in the load's report).
NOT_LOADABLE = "not_loadable"
NESTED_FOLDER = "nested_folder"

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


@dataclass
class Discovery:
    """What a load finds under PATH: ``files`` to load; ``passed_over`` (label, reason) for
    entries of no loadable kind; ``unreadable`` (label, why) for files or subject folders
    that could not be read (so nothing is known of what they hold)."""

    files: list[SourceFile] = field(default_factory=list)
    passed_over: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


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


def discover(root: Path) -> Discovery:
    """What to load under ``root``; raises NotFoundError when it does not exist, and
    UnsupportedFileError when it is neither a file nor a folder."""
    if root.is_file():
        kind = _kind(root)
        if kind is None:  # named on its own, it is not passed over silently
            raise UnsupportedFileError(
                f"{root.name}: not an image ({', '.join(sorted(IMAGE_SUFFIXES))}), an "
                f"ANSI/NIST-ITL transaction ({', '.join(sorted(NIST_SUFFIXES))}) or an "
                "ISO/IEC 19794-2 record"
            )
        return Discovery([SourceFile(root, root.name, root.stem, kind)])
    if not root.exists():  # reason as for any other path that is not there (README)
        raise NotFoundError(f"{root} does not exist", reason="file_not_found")
    if not root.is_dir():  # a device, a FIFO, a socket
        raise UnsupportedFileError(f"{root} is neither a file nor a directory")
    found = Discovery()
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            try:
                inside = sorted(entry.iterdir())
            except OSError as exc:
                found.unreadable.append((entry.name + "/", f"cannot list ({exc.strerror})"))
                continue
            for path in inside:
                label = str(path.relative_to(root))
                if path.is_dir():
                    found.passed_over.append((label + "/", NESTED_FOLDER))
                else:
                    _add(found, path, label, entry.name)
        else:
            _add(found, entry, entry.name, _subject_of_loose(entry))
    return found


def _add(found: Discovery, path: Path, label: str, subject: str) -> None:
    if not path.is_file():  # a pipe, socket or broken link: never opened (a pipe would block)
        found.passed_over.append((label, NOT_LOADABLE))
        return
    try:
        kind = _kind(path)
    except OSError as exc:  # sniffing an unnamed file for a record's magic
        found.unreadable.append((label, f"cannot read ({exc.strerror})"))
        return
    if kind is None:
        found.passed_over.append((label, NOT_LOADABLE))
    else:
        found.files.append(SourceFile(path, label, subject, kind))
