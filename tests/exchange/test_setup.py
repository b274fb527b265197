"""Exchange settings and start-up parts without servers: secrets, errors, thresholds."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from matcher.errors import TemplateFormatError
from matcher.face.template import FaceTemplate
from matcher.fingerprint.match.thresholds import TABLE
from matcher.search.face import face_schema, templates_to_records
from node.errors import ConfigError
from node.exchange.messages import TemplateItem, b64url
from node.exchange.search import GallerySearch, decode_fingerprints, node_restrictions
from node.exchange.setup import _passphrase, hit_secret, load_credentials, log_origin
from node.services.galleries import GallerySet
from node.settings import Settings, load_settings
from node.thresholds import (
    FACE_THRESHOLDS,
    face_fmr,
    face_threshold,
    fingerprint_fmr,
    fingerprint_threshold,
)
from policy.restrictions import parse_restrictions
from tests.fifo_support import FIFO_WAIT_S, fifo_released_after


def test_peers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BDX_PEERS", '{"id": "https://127.0.0.1:8444"}')
    settings = load_settings(check=False)
    assert settings.peers == {"ID": "https://127.0.0.1:8444"}
    assert not settings.exchange_enabled


def test_production_with_peers_needs_pki_and_policy(tmp_path: Path) -> None:
    settings = Settings(
        environment="production", country="TH", data_dir=tmp_path, peers={"ID": "https://x"}
    )
    assert "a node with peers needs pki_dir and policy_file" in settings.unsafe_reasons()


def test_hit_secret_is_created_private_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = hit_secret(settings)
    path = tmp_path / "hit-secret.key"
    assert len(first) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert hit_secret(settings) == first
    path.write_bytes(b"short")
    with pytest.raises(ConfigError) as err:
        hit_secret(settings)
    assert err.value.reason == "bad_config"


def test_secret_files_that_are_fifos_or_huge_are_refused_at_once(tmp_path: Path) -> None:
    """The hit secret and the PKI passphrase file: a FIFO named by mistake is refused, not
    waited on (``bdx serve`` hung at start), and a device or huge file is not read whole."""
    fifo = tmp_path / "fifo"
    settings = Settings(data_dir=tmp_path, hit_secret_file=fifo, pki_passphrase_file=fifo)
    for read in (hit_secret, _passphrase):
        with fifo_released_after(fifo) as took, pytest.raises(ConfigError) as err:
            read(settings)
        assert took[0] < FIFO_WAIT_S and "not a regular file" in err.value.message, read
        fifo.unlink()
    huge = tmp_path / "huge"
    with huge.open("wb") as fh:
        fh.truncate(1 << 30)  # sparse: 1 GiB read as zeros
    settings = Settings(data_dir=tmp_path, hit_secret_file=huge, pki_passphrase_file=huge)
    for read in (hit_secret, _passphrase):
        with pytest.raises(ConfigError) as err:
            read(settings)
        assert "too large" in err.value.message, read


#: Creates the hit secret in the folder argv[1] with files limited to 0 bytes (SIGXFSZ ignored:
#: the write fails with EFBIG, as on a full disk); prints the error's reason and exit code.
_NO_ROOM = """
import resource, signal, sys
from pathlib import Path
from matcher.errors import BdxError
from node.exchange.setup import hit_secret
from node.settings import Settings
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
try:
    hit_secret(Settings(data_dir=Path(sys.argv[1])))
except BdxError as exc:
    print(exc.reason, exc.exit_code)
"""


def test_a_hit_secret_that_cannot_be_written_leaves_nothing_behind(tmp_path: Path) -> None:
    """Its write failing (a full disk) left an empty hit-secret.key that refused every later
    start ("holds 0 bytes; 32+ needed") until removed by hand, and was reported as exit 2,
    bad_config: now a storage_error (exit 7), nothing left, and the next start creates it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _NO_ROOM, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == ["storage_error", "7"], done.stderr
    assert list(tmp_path.iterdir()) == []
    secret = hit_secret(Settings(data_dir=tmp_path))
    assert len(secret) == 32 and (tmp_path / "hit-secret.key").read_bytes() == secret
    assert [p.name for p in tmp_path.iterdir()] == ["hit-secret.key"]


def test_missing_pki_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_credentials(Settings(data_dir=tmp_path))
    assert err.value.reason == "no_pki"
    assert log_origin("TH") == "bdx.th/exchange-log"


def test_thresholds_follow_the_measured_tables() -> None:
    assert face_threshold(0.01) == (FACE_THRESHOLDS[0][1], 0.01)
    assert face_threshold(1e-3) == (FACE_THRESHOLDS[2][1], 1e-3)
    # below the measured table: its strictest row, reported with the FMR that row had
    assert face_threshold(1e-5) == (FACE_THRESHOLDS[6][1], 1e-5)
    assert face_threshold(1e-9) == (FACE_THRESHOLDS[-1][1], FACE_THRESHOLDS[-1][0])
    assert face_fmr(0.95) == 1e-4 and face_fmr(0.91) == 1e-2 and face_fmr(0.5) == 1.0
    assert face_fmr(0.951) == 3e-5
    assert face_fmr(0.99) == 1e-6
    strictest = TABLE[-1]
    assert fingerprint_threshold(1e-9) == (pytest.approx(strictest[1]), strictest[0])
    assert fingerprint_threshold(0.5)[1] == TABLE[0][0]
    assert fingerprint_fmr(strictest[1] * 2) == pytest.approx(strictest[0])
    assert fingerprint_fmr(0.0) == 1.0


def test_unsupported_fingerprint_format_is_refused() -> None:
    item = TemplateItem(format="ansi378", format_version=1, data=b64url(b"FMR\x00 20\x00"))
    with pytest.raises(TemplateFormatError) as err:
        decode_fingerprints([item])
    assert err.value.reason == "unsupported_format"


def test_stored_restrictions_convert_to_policy_strings() -> None:
    stored = {"asylum_nationality": "MM", "peers": ["ID"], "purposes": ["asylum"]}
    parsed = parse_restrictions(node_restrictions(stored))
    assert parsed.asylum_nationalities == {"MM"} and parsed.peers == {"ID"}
    assert parse_restrictions(node_restrictions({"peers": []})).no_exchange_consent
    assert parse_restrictions(node_restrictions({})) == parse_restrictions([])


def _face(vector: np.ndarray) -> FaceTemplate:
    unit = (vector / np.linalg.norm(vector)).astype(np.float32)
    return FaceTemplate(unit, 80)


def test_face_probe_search_over_a_gallery_set(tmp_path: Path) -> None:
    """A face probe near an enrolled face is a candidate at the 1 % threshold; others are not."""
    rng = np.random.default_rng(3)
    faces = [_face(rng.standard_normal(128)) for _ in range(20)]
    schema = face_schema(faces[0].format, faces[0].format_version)
    with GallerySet.open(tmp_path / "g") as galleries:
        galleries.append(
            schema,
            templates_to_records(
                [f"r{i}" for i in range(20)], [f"s{i}" for i in range(20)], faces, schema
            ),
        )
        search = GallerySearch(galleries)
        near = _face(faces[7].embedding + 0.02 * rng.standard_normal(128).astype(np.float32))
        item = TemplateItem(
            format=near.format, format_version=near.format_version, data=b64url(near.to_bytes())
        )
        (hit,) = search(search.decode("face", [item]), 5, 0.01)
        assert hit.record_ref == "s7" and hit.score >= FACE_THRESHOLDS[0][1]
        stranger = _face(rng.standard_normal(128))
        other = TemplateItem(
            format=stranger.format,
            format_version=stranger.format_version,
            data=b64url(stranger.to_bytes()),
        )
        assert search(search.decode("face", [other]), 5, 0.01) == []
        with pytest.raises(TemplateFormatError):
            search.decode("iris", [other])
        # A model this node holds no gallery of is refused, not answered "no match"; and the
        # item's named format must be the template's.
        foreign = FaceTemplate(faces[7].embedding, 80, format="other-model/hog")
        unknown = TemplateItem(
            format=foreign.format, format_version=1, data=b64url(foreign.to_bytes())
        )
        misnamed = item.model_copy(update={"format_version": 9})
        for probe, reason in ((unknown, "incompatible_format"), (misnamed, "format_mismatch")):
            with pytest.raises(TemplateFormatError) as refused:
                search.decode("face", [probe])
            assert refused.value.reason == reason


def test_peer_searches_keep_the_fpir_at_the_gallery_size(tmp_path: Path) -> None:
    """A peer's probe at cosine 0.935 to a record is a hit at the policy's FMR 1e-3 with no
    FPIR limit, and no hit where the node's FPIR of 1 % over 20 records asks for 5e-4 a
    comparison (the table's 3e-4 row): peers get the rule officers do."""
    rng = np.random.default_rng(4)
    faces = [_face(rng.standard_normal(128)) for _ in range(20)]
    schema = face_schema(faces[0].format, faces[0].format_version)
    other = rng.standard_normal(128)
    other -= (other @ faces[5].embedding) * faces[5].embedding
    near = _face(0.935 * faces[5].embedding + np.sqrt(1 - 0.935**2) * other / np.linalg.norm(other))
    item = TemplateItem(
        format=near.format, format_version=near.format_version, data=b64url(near.to_bytes())
    )
    with GallerySet.open(tmp_path / "g") as galleries:
        refs = [f"r{i}" for i in range(20)]
        galleries.append(
            schema, templates_to_records(refs, [f"s{i}" for i in range(20)], faces, schema)
        )
        lenient, strict = GallerySearch(galleries, fpir=0.99), GallerySearch(galleries, fpir=0.01)
        (hit,) = lenient(lenient.decode("face", [item]), 5, 1e-3)
        assert hit.record_ref == "s5" and hit.score == pytest.approx(0.935, abs=1e-4)
        assert strict(strict.decode("face", [item]), 5, 1e-3) == []


def test_the_log_keys_are_remembered(tmp_path: Path) -> None:
    """Each signing key the node's log is opened with is recorded; the others are returned as
    the log's earlier keys (a node that renewed its certificate still audits its old
    checkpoints)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from certs.translog import SigningKey
    from node.exchange.setup import _log_key_history

    path = tmp_path / "data" / "log-keys.txt"
    first = SigningKey("bdx.th/exchange-log", ec.generate_private_key(ec.SECP256R1()))
    second = SigningKey("bdx.th/exchange-log", ec.generate_private_key(ec.SECP256R1()))
    assert _log_key_history(path, first.verifying_key()) == []
    assert _log_key_history(path, first.verifying_key()) == []  # recorded once
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _log_key_history(path, second.verifying_key()) == [first.verifying_key()]
    assert _log_key_history(path, first.verifying_key()) == [second.verifying_key()]
    assert len(path.read_text().split()) == 2
    third = SigningKey("bdx.th/exchange-log", ec.generate_private_key(ec.SECP256R1()))
    before = path.read_bytes()
    earlier = _log_key_history(path, third.verifying_key(), record=False)  # a CLI reader
    assert earlier == [first.verifying_key(), second.verifying_key()]
    assert path.read_bytes() == before
    assert _log_key_history(tmp_path / "none.txt", first.verifying_key(), record=False) == []
    assert not (tmp_path / "none.txt").exists()
    path.write_text("not a vkey\n")
    with pytest.raises(ConfigError) as err:
        _log_key_history(path, first.verifying_key())
    assert err.value.reason == "bad_log_keys" and "not a list of log keys" in str(err.value)
    path.write_bytes(b"\xff\n")
    with pytest.raises(ConfigError, match="not a list of log keys"):
        _log_key_history(path, first.verifying_key())
    unreadable = tmp_path / "dir-as-file"
    unreadable.mkdir()
    with pytest.raises(ConfigError, match="cannot read"):
        _log_key_history(unreadable, first.verifying_key())
    blocked = tmp_path / "a-file" / "log-keys.txt"  # its folder cannot be made
    blocked.parent.write_text("")
    with pytest.raises(ConfigError, match="cannot record the log key"):
        _log_key_history(blocked, first.verifying_key())
