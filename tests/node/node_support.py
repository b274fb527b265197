"""Helpers of the node tests (imported by the tests and their conftest)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import warnings
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy.orm import Session, sessionmaker

from matcher.gallery import FieldSpec, GallerySchema
from node.db.models import Modality
from node.services.galleries import GallerySet, gallery_writer
from node.services.records import NewRecord, RecordService

with warnings.catch_warnings():
    # starlette warns once at import that it prefers the `httpx2` fork; the API is the same.
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

__all__ = ["TestClient", "bearer", "cli", "enrol", "free_port", "load_json", "self_signed_tls"]

#: A minimal fingerprint gallery layout for tests that need records, not real templates.
SCHEMA = GallerySchema("fingerprint", "test-minutiae", 1, {"xy": FieldSpec("float32", (2,))})


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``bdx ARGS`` in-process: (exit code, stdout, stderr)."""
    from node.cli import main

    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def load_json(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, Any]:
    """``bdx gallery load PATH --json --workers 1 [EXTRA]``: (exit code, its JSON report)."""
    code, out, err = cli(["gallery", "load", str(path), "--json", "--workers", "1", *extra], capsys)
    assert out, err
    return code, json.loads(out)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for_health(proc: subprocess.Popen[Any], port: int, seconds: float) -> None:
    """Until ``bdx serve`` (``proc``) answers ``/health`` on ``port``; fails if it exits
    first or takes longer than ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def self_signed_tls(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throw-away certificate and owner-only key for ``host`` (tests only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bdx test node")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address(host))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "node.crt", directory / "node.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def enrol(sessions: sessionmaker[Session], galleries: GallerySet, subject: str, n: int) -> None:
    """Enrol ``n`` fingerprint records (positions 1..n, zero templates) for ``subject``."""
    items = [
        NewRecord(
            subject_external_id=subject,
            modality=Modality.FINGERPRINT,
            format=SCHEMA.format,
            format_version=SCHEMA.format_version,
            finger_position=i + 1,
            quality=60,
            source="load-1",
        )
        for i in range(n)
    ]
    with sessions() as s:
        write = gallery_writer(galleries, SCHEMA, {"xy": np.zeros((n, 2), np.float32)})
        RecordService(s, galleries).enrol(items, write, actor="test")
