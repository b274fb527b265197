"""Exit codes scripts rely on (README, "Exit codes"): storage failures are 7, Ctrl-C is 130
with one line and no worker tracebacks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from matcher.synthetic import make_impression, make_master

BDX = [sys.executable, "-c", "from node.cli import main; main()"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BDX_")}
    base.update(BDX_DATA_DIR=str(tmp_path / "node"), BDX_COUNTRY="XB")
    subprocess.run([*BDX, "db", "upgrade"], env=base, check=True, capture_output=True)
    return base


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_stdout_is_no_output_not_storage(env: dict[str, str]) -> None:
    """A standard output that cannot be written (ENOSPC, EIO) was exit 7, "the node's storage
    failed"; it is the command's own output: exit 2, ``no_output``, in one line."""
    for args in (["users", "add", "ana", "--role", "admin"], ["users", "list"], ["--help"]):
        with open("/dev/full", "w") as full:
            done = subprocess.run(
                [*BDX, *args], env=env, stdout=full, stderr=subprocess.PIPE, text=True
            )
        assert (done.returncode, done.stderr) == (
            2,
            "bdx: error: cannot write standard output: No space left on device [no_output]\n",
        ), args
    assert _tokens(env) == []  # ana was added; only the output of the command was lost
    # An ASCII standard output: click writes to the binary stream below it itself (was exit 7).
    ascii_env = {**env, "PYTHONIOENCODING": "ascii"}
    for args in (["users", "list"], ["--version"]):
        with open("/dev/full", "w") as full:
            done = subprocess.run(
                [*BDX, *args], env=ascii_env, stdout=full, stderr=subprocess.PIPE, text=True
            )
        assert done.returncode == 2 and done.stderr.endswith("[no_output]\n"), args


def _tokens(env: dict[str, str]) -> list[dict[str, object]]:
    """The tokens of ana, the one user."""
    listed = subprocess.run(
        [*BDX, "users", "list", "--json"], env=env, capture_output=True, text=True, check=True
    )
    (user,) = json.loads(listed.stdout)
    tokens: list[dict[str, object]] = user["tokens"]
    return tokens


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """72 synthetic finger images: a load of several seconds on 2 workers."""
    source = tmp_path / "src"
    source.mkdir()
    for finger in range(12):
        master = make_master(finger)
        for i in range(6):
            Image.fromarray(make_impression(master, i)).save(source / f"{finger}_{i + 1}.png")
    return source


def _wait_for_group(proc: subprocess.Popen[bytes], size: int, timeout: float = 120) -> None:
    """Until the process group led by ``proc`` holds ``size`` processes (read from /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        members = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended meanwhile
            members += int(fields[2]) == proc.pid  # field 5, the process group
        if members >= size:
            return
        time.sleep(0.1)
    raise AssertionError(f"the load's workers did not start: {proc.communicate()}")


def _load_interrupted(env: dict[str, str], source: Path, ctrl_c: object) -> tuple[int, bytes]:
    """``bdx gallery load`` with SIGINT handled as ``ctrl_c`` says, sent the whole process
    group's SIGINT (as a terminal's Ctrl-C is) once its workers extract."""
    load = [*BDX, "gallery", "load", str(source), "--workers", "2"]
    proc = subprocess.Popen(
        load,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, ctrl_c),  # type: ignore[arg-type]
    )
    # Not a fixed sleep: on a busy machine the command may still be importing after seconds,
    # where Ctrl-C is Python's KeyboardInterrupt in an import (exit -2), not the load's.
    _wait_for_group(proc, size=3)  # the command and its 2 workers are started
    time.sleep(2)  # ... and the workers extracting
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_ctrl_c_during_a_load_is_130_without_worker_tracebacks(
    env: dict[str, str], images: Path
) -> None:
    code, err = _load_interrupted(env, images, signal.SIG_DFL)  # as from a terminal
    assert code == 130, err
    assert err.decode().strip().splitlines()[-1] == "bdx: interrupted"
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err


def test_a_load_that_ignores_ctrl_c_is_not_stopped_by_it(env: dict[str, str], images: Path) -> None:
    """A shell's background job ignores Ctrl-C; its workers do too (they died alone, and the
    load failed as load_stopped)."""
    code, err = _load_interrupted(env, images, signal.SIG_IGN)
    assert code == 0, err


def test_ctrl_c_while_bdx_loads_is_one_line() -> None:
    """Loading the command line takes a second or two; a Ctrl-C then printed a traceback."""
    interrupt_soon = (
        "import os, signal, threading; from node.console import main; "
        "threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start(); main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", interrupt_soon, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert (done.returncode, done.stderr) == (130, "bdx: interrupted\n")


def test_a_data_dir_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    """BDX_DATA_DIR under a file was a NotADirectoryError traceback (exit 1); it is a bad
    setting (2) now, named in one line."""
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BDX_")}
    env.update(BDX_DATA_DIR=str(blocked / "node"), BDX_COUNTRY="XB")
    done = subprocess.run([*BDX, "users", "list"], env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"bdx: error: Not a directory: {blocked / 'node'} [not_a_directory]\n"


def test_a_gallery_dir_that_is_a_file_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    """`bdx gallery stats` with gallery_dir a regular file said "no galleries yet", exit 0
    (`gallery upgrade` said nothing; `load`, `reconcile`, `erase` and `serve` said "File
    exists" [file_exists]); it is a setting's folder that cannot be used, 2."""
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    env = {**env, "BDX_GALLERY_DIR": str(blocked)}
    from node_support import free_port

    images = tmp_path / "images"
    images.mkdir()
    commands = [
        ["gallery", "stats"],
        ["gallery", "upgrade"],
        ["gallery", "reconcile"],
        ["gallery", "erase"],
        ["gallery", "load", str(images)],
        ["serve", "--port", str(free_port())],
    ]
    for command in commands:
        done = subprocess.run([*BDX, *command], env=env, capture_output=True, text=True)
        assert (done.returncode, done.stdout) == (2, ""), (command, done.stderr)
        assert done.stderr == (
            f"bdx: error: gallery_dir {blocked} is not a directory [not_a_directory]\n"
        )


def _with_reader_gone(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``bdx ARGS | head -0``: stdout is a pipe whose reader has already closed it."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [*BDX, *args], env=env, stdout=write_end, stderr=subprocess.PIPE, text=True
        )
    finally:
        os.close(write_end)


def test_a_reader_that_leaves_early_is_exit_0(env: dict[str, str]) -> None:
    """`bdx users list | head -1` ended with exit 1 and no word (typer's answer to EPIPE), the
    code of a bug; output buffered to the end lost its last flush the same way."""
    subprocess.run(
        [*BDX, "users", "add", "ana", "--role", "admin"], env=env, capture_output=True, check=True
    )
    for args in (["users", "list"], ["eval", "fingerprint", "--synthetic", "2:2", "--json"]):
        done = _with_reader_gone(args, env)
        assert (done.returncode, done.stderr) == (0, ""), args


def test_help_to_a_reader_gone_is_exit_0(env: dict[str, str]) -> None:
    """`bdx --help | true` exited 1 with no word (rich's answer to EPIPE), the code of a bug."""
    for args in (["--help"], ["users", "--help"], ["query", "--help"]):
        done = _with_reader_gone(args, env)
        assert (done.returncode, done.stderr) == (0, ""), args


@pytest.mark.parametrize(
    ("output", "why"),
    [([], "Broken pipe"), (["--json"], "Broken pipe"), ([], "No space left on device")],
)
def test_a_token_that_cannot_be_printed_is_revoked(
    env: dict[str, str], output: list[str], why: str
) -> None:
    """`bdx users token ana | cmd` with cmd gone: the token was stored and logged, printed to
    nobody, exit 0 in silence. It counts once written and flushed; else it is revoked at once
    and the command exits 2 in one line. The same for a standard output that is full."""
    subprocess.run(
        [*BDX, "users", "add", "ana", "--role", "admin"], env=env, capture_output=True, check=True
    )
    args = ["users", "token", "ana", *output]
    if why == "Broken pipe":
        done = _with_reader_gone(args, env)
    else:
        with open("/dev/full", "w") as full:
            done = subprocess.run(
                [*BDX, *args], env=env, stdout=full, stderr=subprocess.PIPE, text=True
            )
    (token,) = _tokens(env)
    assert done.returncode == 2 and done.stderr == (
        f"bdx: error: the token could not be printed ({why}); token {token['token_id']} "
        "was revoked [no_output]\n"
    )
    assert token["revoked"] is True


def test_a_token_is_not_issued_to_a_closed_stdout(env: dict[str, str]) -> None:
    """`bdx users token ana >&-` issued and stored a token nobody could see, exit 0."""
    subprocess.run(
        [*BDX, "users", "add", "ana", "--role", "admin"], env=env, capture_output=True, check=True
    )
    done = subprocess.run(
        [*BDX, "users", "token", "ana"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.close(1),
    )
    assert done.returncode == 2 and "[no_output]" in done.stderr, done.stderr
    listed = subprocess.run(
        [*BDX, "users", "list", "--json"], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(listed.stdout)[0]["tokens"] == []


def _enrolled(env: dict[str, str], subject: str = "case-1", n: int = 3) -> Path:
    """``n`` records of ``subject`` enrolled in the node of ``env`` (database and gallery, the
    tests' schema); returns the folder of the gallery that holds them."""
    from node_support import SCHEMA, enrol

    from node.db.engine import create_db_engine, session_factory
    from node.services.galleries import GallerySet, gallery_name
    from node.settings import Settings

    settings = Settings(data_dir=Path(env["BDX_DATA_DIR"]), country=env["BDX_COUNTRY"])
    engine = create_db_engine(settings.db_url)
    try:
        with GallerySet.open(settings.gallery_path) as galleries:
            enrol(session_factory(engine), galleries, subject, n)
    finally:
        engine.dispose()
    return settings.gallery_path / gallery_name(SCHEMA)


def _flip_a_byte(folder: Path) -> None:
    segment = sorted(folder.glob("seg-*.ref.npy"))[0]
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF
    segment.write_bytes(bytes(data))


def _manifest_as_a_folder(folder: Path) -> None:
    (folder / "MANIFEST.json").unlink()
    (folder / "MANIFEST.json").mkdir()


def _segment_as_a_folder(folder: Path) -> None:
    segment = sorted(folder.glob("seg-*.ref.npy"))[0]
    segment.unlink()
    segment.mkdir()  # EISDIR on open, as root too


def _segment_a_symlink_loop(folder: Path) -> None:
    segment = sorted(folder.glob("seg-*.ref.npy"))[0]
    segment.unlink()
    segment.symlink_to(segment.name)  # ELOOP on stat and open


def _storage_refusal(done: subprocess.CompletedProcess[str], reason: str) -> None:
    assert done.returncode == 7, done.stderr
    assert done.stderr.startswith("bdx: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert f"[{reason}]" in done.stderr


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_flip_a_byte, "bad_checksum"),
        (_manifest_as_a_folder, "unreadable_manifest"),
        (_segment_a_symlink_loop, "unreadable_gallery_file"),
    ],
)
def test_serve_refuses_a_damaged_gallery_in_one_line(
    env: dict[str, str], damage: Callable[[Path], None], reason: str
) -> None:
    """The gallery was opened in the app's lifespan: uvicorn's traceback (75-98 lines, exit
    3) where `bdx gallery load` said it in one line (exit 7)."""
    from node_support import free_port

    damage(_enrolled(env))
    done = subprocess.run(
        [*BDX, "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    _storage_refusal(done, reason)


def test_a_manifest_that_is_a_folder_is_one_line(env: dict[str, str]) -> None:
    """IsADirectoryError was a traceback, exit 1, in `bdx gallery stats` and `load`."""
    _manifest_as_a_folder(_enrolled(env))
    done = subprocess.run([*BDX, "gallery", "stats"], env=env, capture_output=True, text=True)
    _storage_refusal(done, "unreadable_manifest")


@pytest.mark.parametrize("damage", [_segment_as_a_folder, _segment_a_symlink_loop])
def test_a_segment_that_cannot_be_read_is_one_line(
    env: dict[str, str], damage: Callable[[Path], None]
) -> None:
    """IsADirectoryError or ELOOP on a segment file was a traceback, exit 1, in `bdx gallery
    stats` and `erase` (and `serve`, `load` for ELOOP)."""
    damage(_enrolled(env))
    for command in (["gallery", "stats"], ["gallery", "erase"]):
        done = subprocess.run([*BDX, *command], env=env, capture_output=True, text=True)
        _storage_refusal(done, "unreadable_gallery_file")
        assert "cannot read seg-" in done.stderr


def test_a_tombstone_file_of_garbage_is_one_line(env: dict[str, str]) -> None:
    """np.load's ValueError on a tombstone file holding no .npy array was a traceback, exit
    1, in `bdx gallery stats` and `erase`."""
    from matcher.gallery import Gallery

    folder = _enrolled(env)
    with Gallery.open(folder, writable=True) as gallery:
        gallery.delete(gallery.references()[:1])
    (tombstones,) = folder.glob("tomb-*.npy")
    tombstones.write_bytes(b"not an array at all\n")
    for command in (["gallery", "stats"], ["gallery", "erase"]):
        done = subprocess.run([*BDX, *command], env=env, capture_output=True, text=True)
        _storage_refusal(done, "bad_tombstones")
        assert f"{tombstones.name}: not a .npy array file" in done.stderr


def _templates(folder: Path) -> Path:
    """One ISO/IEC 19794-2 record to load (``folder``)."""
    from matcher.fingerprint.iso19794_2 import encode
    from matcher.synthetic import synthetic_templates

    folder.mkdir()
    (folder / "1_1.fmr").write_bytes(encode(synthetic_templates(1, 1, seed=5)[0][0]))
    return folder


def _serve_refused(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    from node_support import free_port

    try:
        return subprocess.run(
            [*BDX, "serve", "--port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("bdx serve started without the gallery of its database's records")


def test_a_gallery_that_lost_its_manifest_is_refused_not_replaced(
    env: dict[str, str], tmp_path: Path
) -> None:
    """It was taken for no gallery: stats showed {} (exit 0), serve answered no-hit for
    everyone, and the next load created a gallery in its folder, deleting its segments."""
    folder = _enrolled(env)
    (folder / "MANIFEST.json").unlink()
    kept = sorted(p.name for p in folder.iterdir())
    for command in (["gallery", "stats"], ["gallery", "load", str(_templates(tmp_path / "new"))]):
        done = subprocess.run([*BDX, *command], env=env, capture_output=True, text=True)
        _storage_refusal(done, "missing_manifest")
    _storage_refusal(_serve_refused(env), "missing_manifest")
    assert sorted(p.name for p in folder.iterdir()) == kept


def test_upgrade_refuses_a_gallery_that_lost_its_manifest(env: dict[str, str]) -> None:
    """`bdx gallery upgrade` passed over it (exit 0, nothing said), while stats, load and
    serve refuse it as missing_manifest (exit 7)."""
    folder = _enrolled(env)
    (folder / "MANIFEST.json").unlink()
    kept = sorted(p.name for p in folder.iterdir())
    done = subprocess.run([*BDX, "gallery", "upgrade"], env=env, capture_output=True, text=True)
    _storage_refusal(done, "missing_manifest")
    assert done.stdout == "" and sorted(p.name for p in folder.iterdir()) == kept


def test_upgrade_recovery_keeps_the_only_whole_copy(env: dict[str, str]) -> None:
    """`X.old` (the gallery before an interrupted upgrade) beside an `X` that lost its
    manifest: recovery deleted `X.old`, the last whole copy, then refused `X` as
    missing_manifest. It is refused in one line now, both folders left as they were."""
    import shutil

    folder = _enrolled(env)
    retired = folder.with_name(folder.name + ".old")
    shutil.copytree(folder, retired)
    (folder / "MANIFEST.json").unlink()
    kept = {p: sorted(q.name for q in p.iterdir()) for p in (folder, retired)}
    done = subprocess.run([*BDX, "gallery", "upgrade"], env=env, capture_output=True, text=True)
    _storage_refusal(done, "interrupted_upgrade")
    assert f"rename {retired.name} to {folder.name}" in done.stderr
    _storage_refusal(_serve_refused(env), "interrupted_upgrade")
    assert {p: sorted(q.name for q in p.iterdir()) for p in (folder, retired)} == kept


def test_a_lost_gallery_is_refused_while_the_database_holds_its_records(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The database's active records of a modality with no gallery: serve answered no-hit
    for all of them, and a load started a new, empty gallery beside their rows."""
    import shutil

    shutil.rmtree(_enrolled(env))
    load = [*BDX, "gallery", "load", str(_templates(tmp_path / "new"))]
    done = subprocess.run(load, env=env, capture_output=True, text=True)
    _storage_refusal(done, "missing_gallery")
    assert "3 active fingerprint records" in done.stderr
    _storage_refusal(_serve_refused(env), "missing_gallery")


def test_serve_refuses_a_database_without_the_gallerys_records(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Its start-up reconcile removed every gallery record, and it served no-hits."""
    _enrolled(env)
    wrong = env | {"BDX_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}"}
    _storage_refusal(_serve_refused(wrong), "too_many_orphans")


def _modes_bind() -> list[str]:
    """A command prefix under which file modes bind: root's CAP_DAC_OVERRIDE dropped (as a
    node's unprivileged user has none); nothing for another user."""
    if os.geteuid() != 0:
        return []
    drop = "-dac_override,-dac_read_search"
    prefix = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}"]
    try:
        subprocess.run([*prefix, "true"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("root, and setpriv cannot drop CAP_DAC_OVERRIDE: file modes do not bind")
    return prefix


def test_a_gallery_the_node_may_not_write_is_exit_7_in_one_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    """EACCES was exit 1 with a 67-line traceback, though README promises exit 7 for an
    unwritable gallery."""
    gallery = Path(env["BDX_DATA_DIR"]) / "gallery"
    gallery.mkdir(mode=0o555)
    load = [*BDX, "gallery", "load", str(_templates(tmp_path / "new")), "--workers", "1"]
    done = subprocess.run([*_modes_bind(), *load], env=env, capture_output=True, text=True)
    _storage_refusal(done, "storage_error")
    assert f"Permission denied: {gallery}" in done.stderr
