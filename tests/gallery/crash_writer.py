"""Crash-test writer: applies operations forever until SIGKILLed (run by test_crash.py).

Usage: python tests/gallery/crash_writer.py GALLERY_DIR. Prints ``ready`` once open, then
``start <i>`` (flushed) before operation ``i``.
"""

from __future__ import annotations

import sys

from matcher.gallery import Gallery
from tests.gallery.crash_ops import SCHEMA, apply


def main() -> None:
    directory = sys.argv[1]
    try:
        gallery = Gallery.open(directory, writable=True)
    except Exception:
        gallery = Gallery.create(directory, SCHEMA)
    i = int(gallery.user.get("ops", 0))
    print("ready", flush=True)
    while True:
        print(f"start {i}", flush=True)
        apply(gallery, i)
        i += 1


if __name__ == "__main__":
    main()
