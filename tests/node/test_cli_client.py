"""``bdx query`` and ``bdx subjects``: the user's own mistakes (files, CA bundle, URL) and a
node whose certificate does not verify are one line with their documented exit code."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from node_support import cli, free_port, self_signed_tls

from node.cli._common import read_input
from node.db.models import Role
from node.service_errors import PayloadTooLargeError
from tests.fifo_support import FIFO_WAIT_S, fifo_released_after

DER = Encoding.DER


@pytest.fixture
def token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A token file (any text: these mistakes are found before the node is asked)."""
    monkeypatch.delenv("BDX_TOKEN", raising=False)
    path = tmp_path / "token"
    path.write_text("bdx_not-checked-here\n")
    return path


def _query(files: list[str], token_file: Path, *extra: str) -> list[str]:
    nowhere = f"http://127.0.0.1:{free_port()}"
    return [
        "query", *files, "--to", "MY", "--purpose", "border_control",
        "--url", nowhere, "--token-file", str(token_file), *extra,
    ]  # fmt: skip


def test_a_missing_file_is_4_and_an_unreadable_one_3(
    token_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """They were exit 1 (QueryFailedError had no exit code), the code of a bug."""
    code, _, err = cli(_query([str(tmp_path / "absent.iso")], token_file), capsys)
    assert code == 4 and "absent.iso" in err and len(err.splitlines()) == 1, err
    code, _, err = cli(_query([str(tmp_path)], token_file), capsys)
    assert code == 3 and "[unreadable_file]" in err and len(err.splitlines()) == 1, err


def test_a_pipe_is_read_no_further_than_the_bound(tmp_path: Path) -> None:
    """A pipe or device states size 0, so the size check passed and everything was read."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    bound = 1024

    def write(count: int) -> None:
        with contextlib.suppress(BrokenPipeError), pipe.open("wb") as fh:  # reader stopped
            fh.write(b"\0" * count)

    for count, fits in ((bound, True), (bound + 1, False)):
        writer = threading.Thread(target=write, args=(count,))
        writer.start()
        try:
            if fits:
                assert len(read_input(pipe, "query file", max_bytes=bound)) == bound
            else:
                with pytest.raises(PayloadTooLargeError) as info:
                    read_input(pipe, "query file", max_bytes=bound)
                assert info.value.reason == "file_too_large"
        finally:
            writer.join()


def test_a_device_is_read_no_further_than_the_bound(
    token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``bdx query /dev/zero`` read without end (the reviewer stopped it at 3 GB); so did a
    CA file and ``subjects delete --file``'s id list."""
    code, _, err = cli(_query(["/dev/zero"], token_file), capsys)
    assert code == 3 and "[file_too_large]" in err and len(err.splitlines()) == 1, err
    code, _, err = cli(_query([str(token_file)], token_file, "--ca-file", "/dev/zero"), capsys)
    assert code == 3 and "[file_too_large]" in err and len(err.splitlines()) == 1, err
    nowhere = f"http://127.0.0.1:{free_port()}"
    code, _, err = cli(
        ["subjects", "delete", "--file", "/dev/zero", "-y", "--url", nowhere,
         "--token-file", str(token_file)],
        capsys,
    )  # fmt: skip
    assert code == 3 and "[file_too_large]" in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize(
    ("extra", "option", "why"),
    [
        (["--to", "XYZ"], "--to", "'XYZ' is not an ISO 3166-1 alpha-2 country code"),
        (["--to", "MY,my"], "--to", "a peer is listed twice"),
        (["--modality", "iris"], "'--modality'", "'iris' is not one of 'fingerprint', 'face'"),
        (["--purpose", "Border Control"], "--purpose", "should match pattern"),
        (["--case-ref", "case 1"], "--case-ref", "should match pattern"),
        (["--finger", "11"], "--finger", "less than or equal to 10"),
    ],
)
def test_bad_option_values_are_usage_errors(
    token_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    option: str,
    why: str,
) -> None:
    """`bdx query --to XYZ` and `--modality iris` were the node's 422, exit 3 (bad input
    data); a bad option value is a usage error (2) naming the option, found before the
    FILE is read (absent here: 4) or the node asked (none listens: 6)."""
    code, _, err = cli(_query([str(tmp_path / "absent.iso")], token_file, *extra), capsys)
    assert code == 2 and f"Invalid value for {option}: " in err and why in err, err


@pytest.mark.parametrize("command", ["subjects", "query"])
def test_ca_file_and_url_mistakes_are_one_line(
    command: str, token_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing or non-PEM --ca-file (FileNotFoundError, ssl.SSLError) and an unparsable
    --url (httpx.InvalidURL) were tracebacks, exit 1."""
    probe = tmp_path / "probe.iso"
    probe.write_bytes(b"\0" * 64)
    base = _query([str(probe)], token_file) if command == "query" else [
        "subjects", "list", "--url", f"https://127.0.0.1:{free_port()}",
        "--token-file", str(token_file),
    ]  # fmt: skip
    (tmp_path / "settings.toml").write_text('country = "TH"\n')
    (tmp_path / "empty.pem").write_bytes(b"")
    cases = {
        "absent.pem": (4, "[not_found]"),
        "settings.toml": (3, "[bad_ca_file]"),
        "empty.pem": (3, "[bad_ca_file]"),
    }
    for name, (want, reason) in cases.items():
        code, _, err = cli([*base, "--ca-file", str(tmp_path / name)], capsys)
        assert (code, len(err.splitlines())) == (want, 1) and reason in err, (name, err)
        assert name in err
    for url in ("https://[::1", "ftp://127.0.0.1/", "127.0.0.1:8443"):
        code, _, err = cli([*base, "--url", url], capsys)
        assert (code, len(err.splitlines())) == (2, 1) and "[bad_url]" in err, (url, err)


def test_the_ca_file_that_signed_the_node_is_trusted(
    tls_server: tuple[str, Path],
    make_token: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As PEM and as DER; and no other CA with it (the system's are not added)."""
    url, cert = tls_server
    operator = tmp_path / "operator.token"
    operator.write_text(make_token(Role.OPERATOR))
    der = tmp_path / "node.der"
    der.write_bytes(x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(DER))
    for ca_file in (cert, der):
        args = ["subjects", "list", "--json", "--url", url, "--token-file", str(operator)]
        code, out, err = cli([*args, "--ca-file", str(ca_file)], capsys)
        assert code == 0 and json.loads(out)["items"] == [], err


def test_a_node_certificate_that_does_not_verify_is_5(
    tls_server: tuple[str, Path],
    make_token: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Another CA's bundle, or a host name the certificate does not name, was reported as
    node_unreachable, exit 6 (a node that is down); README gives failed verification 5."""
    url, cert = tls_server
    operator = tmp_path / "operator.token"
    operator.write_text(make_token(Role.OPERATOR))
    other = tmp_path / "other"
    other.mkdir()
    other_ca, _ = self_signed_tls(other)
    args = ["subjects", "list", "--token-file", str(operator)]
    for where, ca_file in ((url, other_ca), (url.replace("127.0.0.1", "localhost"), cert)):
        code, _, err = cli([*args, "--url", where, "--ca-file", str(ca_file)], capsys)
        assert code == 5 and "[node_certificate_refused]" in err, err
        assert len(err.splitlines()) == 1


def test_a_503_that_is_no_storage_failure_stays_6(
    token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 503 from something in front of the node (a proxy whose node is down: no bdx error in
    its body) is the node not being reached, 6; only the node's storage_error and
    database_unavailable are 7 (its storage failed)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>503 Service Unavailable</html>"
            self.send_response(503)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Proxy) as proxy:
        thread = threading.Thread(target=proxy.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{proxy.server_address[1]}"
            args = ["subjects", "list", "--url", url, "--token-file", str(token_file)]
            code, _, err = cli(args, capsys)
        finally:
            proxy.shutdown()
            thread.join()
    assert (code, len(err.splitlines())) == (6, 1) and "[http_503]" in err, err


#: An officer's query answered as ``POST /queries`` answers it (node.api.schemas.queries).
RESULT = {
    "case_ref": "case-7",
    "complete": False,
    "hit": True,
    "results": [
        {"peer": "MY", "status": "answered", "outcome": "hit", "strength": "moderate",
         "reference": "uaU0Ug8ywvtblgdGgGpFab", "reason": None, "detail": None},
        {"peer": "VN", "status": "unreachable", "outcome": None, "strength": None,
         "reference": None, "reason": None,
         "detail": "the peer did not answer within 30 s: connection refused [bold]"},
    ],
}  # fmt: skip


@pytest.mark.parametrize("columns", [20, 40, *range(80, 100), 120, 200])
def test_query_results_keep_references_and_details_whole(
    columns: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table cut the reference (``uaU0Ug8ywvtblgdGgGpF…``) and the detail to fit 80
    columns; a terminal too narrow for a table gets one field a line, each whole."""
    from node.cli.query_cmd import _print

    monkeypatch.setenv("COLUMNS", str(columns))
    _print(RESULT)
    out = capsys.readouterr().out
    words = out.replace("│", " ").split()
    assert "…" not in out and "uaU0Ug8ywvtblgdGgGpFab" in words, out
    if "┏" in out:  # a table: never wider than the terminal (rich crops what is)
        assert max(len(line) for line in out.splitlines()) <= columns, out
    detail = str(RESULT["results"][1]["detail"])  # type: ignore[index]
    assert detail in " ".join(line.strip(" │") for line in out.splitlines()) or (
        f"detail: {detail}" in out
    ), out


def test_a_token_file_that_is_a_fifo_or_device_is_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """read_token opened the path as it was: a FIFO with no writer was waited on forever.
    It is exit 2 (no_token) at once, as a missing token file is; a file that is not UTF-8
    is named so, its message no longer quoting a byte of it."""
    monkeypatch.delenv("BDX_TOKEN", raising=False)
    nowhere = ["--url", f"http://127.0.0.1:{free_port()}"]
    fifo = tmp_path / "token"
    with fifo_released_after(fifo) as took:
        code, _, err = cli(["subjects", "list", *nowhere, "--token-file", str(fifo)], capsys)
    assert took[0] < FIFO_WAIT_S
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"cannot read the token file {fifo}: not a regular file [no_token]" in err, err
    code, _, err = cli(["subjects", "list", *nowhere, "--token-file", "/dev/zero"], capsys)
    assert code == 2 and "/dev/zero: not a regular file [no_token]" in err, err
    latin = tmp_path / "latin"
    latin.write_bytes(b"bdx_\xe9t\xe9\n")
    code, _, err = cli(["subjects", "list", *nowhere, "--token-file", str(latin)], capsys)
    assert code == 2 and f"{latin}: not UTF-8 text [no_token]" in err and "0xe9" not in err, err
