"""Write the demo region's rules files: ``python -m node.demo.rules DIR`` → ``DIR/<cc>.toml``.

Used by ``docker-compose.yml`` (one-shot service) so that the containers get the same rules as
``bdx demo``: MY answers asylum queries only; TH and ID answer border control and asylum.
"""

from __future__ import annotations

import sys
from pathlib import Path

from node.demo.region import COUNTRIES, rules_text


def write_rules(directory: Path) -> list[Path]:
    """One rules file per demo country in ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for cc in COUNTRIES:
        path = directory / f"{cc.lower()}.toml"
        path.write_text(rules_text(cc))
        paths.append(path)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m node.demo.rules DIR")
    for written in write_rules(Path(sys.argv[1])):
        print(written)
