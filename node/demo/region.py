"""Demo region set-up: PKI, rules, settings, database, users and galleries of each node.

Everything goes under one run directory; nothing is downloaded. The nodes' galleries hold
synthetic fingerprints only (:mod:`matcher.synthetic`): rendered images at TH for the local
searches over HTTP, and fast minutiae templates at every node for the cross-border queries.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import Progress
from sqlalchemy.orm import Session

from matcher.fingerprint.template import FingerprintTemplate
from matcher.search.fingerprint import fingerprint_records, fingerprint_schema
from matcher.synthetic import synthetic_templates, write_dataset
from node.db.models import Modality, Role, TemplateRecord
from node.db.setup import open_database
from node.demo.errors import DemoError
from node.services.enrolment import Capture, EnrolmentService
from node.services.galleries import GallerySet, subject_key
from node.services.records import NewRecord, RecordService
from node.services.users import UserService
from node.settings import Settings, load_settings

COUNTRIES = ("TH", "ID", "MY")
#: The command line, run with this interpreter (works from a venv without activating it).
BDX = [sys.executable, "-c", "from node.cli import main; main()"]
ISO_FORMAT = ("iso19794-2:2005", 20)
#: Right thumb (ISO/IEC 19794-2 finger position 1) for every demo record.
FINGER = 1
ACTOR = "demo"
ROLES = {"officer": Role.OFFICER, "operator": Role.OPERATOR, "auditor": Role.AUDITOR}

#: Per-node rules: what each node answers (inbound, per peer) and may ask (outbound).
#: MY answers asylum queries only, so a border-control query to MY is refused (signed).
_INBOUND = {
    "TH": {"ID": (["border_control", "asylum"], 100), "MY": (["border_control", "asylum"], 50)},
    "ID": {"TH": (["border_control", "asylum"], 200), "MY": (["asylum"], 20)},
    "MY": {"TH": (["asylum"], 30), "ID": (["asylum"], 30)},
}


@contextmanager
def session_for(settings: Settings) -> Iterator[Session]:
    """A session on the node database (as ``bdx`` commands open it)."""
    engine, sessions = open_database(settings)
    try:
        with sessions() as session:
            yield session
    finally:
        engine.dispose()


def rules_text(country: str) -> str:
    """The TOML rules file of ``country`` (``bdx policy validate`` accepts it)."""
    text = f'version = "demo-1"\ncountry = "{country}"\n'
    for peer, (purposes, quota) in _INBOUND[country].items():
        quoted = ", ".join(f'"{p}"' for p in purposes)
        text += (
            f'\n[peers.{peer}]\npurposes = [{quoted}]\nmodalities = ["fingerprint"]\n'
            f"daily_quota = {{ fingerprint = {quota} }}\n"
            f'[outbound.{peer}]\npurposes = ["border_control", "asylum"]\n'
        )
    return text


def free_port() -> int:
    """A TCP port free on loopback now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DemoNode:
    country: str
    root: Path
    api_port: int
    peer_port: int
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "bdx.toml"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def peer_url(self) -> str:
        return f"https://127.0.0.1:{self.peer_port}"

    def settings(self) -> Settings:
        return load_settings(self.config)


def run_bdx(args: Sequence[str], what: str, *, timeout: float = 120) -> str:
    """Run ``bdx ARGS``; raise :class:`DemoError` with its one-line error when it fails."""
    done = subprocess.run(
        [*BDX, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise DemoError(f"{what} failed (exit {done.returncode}): {last}", reason="step_failed")
    return done.stdout


def bootstrap_region(run_dir: Path) -> Path:
    """``bdx pki bootstrap`` for the demo countries into ``run_dir/pki``."""
    pki = run_dir / "pki"
    run_bdx(["pki", "bootstrap", "--countries", ",".join(COUNTRIES), "--out", str(pki)], "pki")
    return pki


def write_nodes(run_dir: Path, pki: Path) -> dict[str, DemoNode]:
    """Rules and a settings file per node (SQLite, gallery and ports under ``run_dir``)."""
    nodes = {cc: DemoNode(cc, run_dir / cc.lower(), free_port(), free_port()) for cc in COUNTRIES}
    for cc, node in nodes.items():
        node.root.mkdir(mode=0o700)
        (node.root / "rules.toml").write_text(rules_text(cc))
        peers = "".join(f'{p} = "{n.peer_url}"\n' for p, n in nodes.items() if p != cc)
        node.config.write_text(
            f'environment = "development"\ncountry = "{cc}"\n'
            f'data_dir = "{node.root}"\nhost = "127.0.0.1"\nport = {node.api_port}\n'
            f'peer_port = {node.peer_port}\npki_dir = "{pki}"\n'
            f'policy_file = "{node.root / "rules.toml"}"\npeer_timeout_s = 10.0\n'
            f"\n[peers]\n{peers}"
        )
    return nodes


def prepare_node(node: DemoNode) -> None:
    """``bdx db upgrade`` and one user per role with a one-day token."""
    run_bdx(["db", "upgrade", "--config", str(node.config)], f"{node.country} db upgrade")
    with session_for(node.settings()) as session:
        users = UserService(session)
        for name, role in ROLES.items():
            users.add_user(name, role, actor=ACTOR)
            node.tokens[name] = users.issue_token(name, expires_days=1, actor=ACTOR).token


@dataclass(frozen=True)
class Synthetic:
    """The demo's fingers: ``images[f]`` paths of finger f's impressions (1-based as written),
    ``templates[f][i]`` impression i of template finger f."""

    images: dict[int, list[Path]]
    templates: list[list[FingerprintTemplate]]
    background: list[FingerprintTemplate]


def make_synthetic(run_dir: Path, image_fingers: int, template_fingers: int) -> Synthetic:
    paths = write_dataset(run_dir / "images", image_fingers, 2, seed=7, profile="clean")
    images: dict[int, list[Path]] = {}
    for p in paths:
        images.setdefault(int(p.stem.split("_")[0]), []).append(p)
    background = [f[0] for f in synthetic_templates(template_fingers, 1, seed=31)]
    return Synthetic(images, synthetic_templates(template_fingers, 2, seed=23), background)


def enrol_templates(
    node: DemoNode,
    subjects: Sequence[str],
    templates: Sequence[FingerprintTemplate],
    progress: Progress,
) -> None:
    """Enrol one right-thumb template per subject through the node's record service."""
    task = progress.add_task(f"{node.country} gallery", total=len(subjects))
    settings = node.settings()
    block = 200
    with session_for(settings) as session, GallerySet.open(settings.gallery_path) as galleries:
        records = RecordService(session, galleries)
        for start in range(0, len(subjects), block):
            names = subjects[start : start + block]
            chunk = list(templates[start : start + block])
            new = [NewRecord(s, Modality.FINGERPRINT, *ISO_FORMAT, FINGER) for s in names]

            def write(
                rows: Sequence[TemplateRecord], chunk: list[FingerprintTemplate] = chunk
            ) -> None:
                batch = fingerprint_records(
                    [r.reference for r in rows],
                    [subject_key(r.subject_id) for r in rows],
                    chunk,
                    [FINGER] * len(rows),
                )
                galleries.append(fingerprint_schema(), batch)

            records.enrol(new, write, actor=ACTOR)
            progress.advance(task, len(names))


def enrol_images(node: DemoNode, images: dict[str, Path], progress: Progress) -> None:
    """Extract and enrol one image per subject (the path `bdx gallery load` takes)."""
    task = progress.add_task(f"{node.country} images", total=len(images))
    settings = node.settings()
    captures = [
        Capture(s, Modality.FINGERPRINT, p, finger_position=FINGER, source="demo", label=p.name)
        for s, p in images.items()
    ]
    with session_for(settings) as session, GallerySet.open(settings.gallery_path) as galleries:
        report = EnrolmentService(session, galleries).enrol(
            captures, actor=ACTOR, on_progress=lambda _: progress.advance(task)
        )
    if report.failed:
        capture, error = report.failed[0]
        raise DemoError(f"enrolling {capture.label} failed: {error.message}", reason="enrol")
