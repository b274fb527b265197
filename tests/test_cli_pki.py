"""``bdx pki``: the whole CA workflow through the real command line, and its errors."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest

from certs import jws
from certs.pki import CertificateAuthority, load_certificate, load_private_key
from certs.pki.bootstrap import make_node
from certs.pki.keys import certificate_pem, write_public
from certs.pki.params import MAX_PASSPHRASE_FILE_BYTES, MAX_PKI_FILE_BYTES
from certs.pki.revocation import crl_pem
from certs.pki.trustlist import load_trust_list
from certs.translog import VerifyingKey
from node.cli import main
from tests.fifo_support import FIFO_WAIT_S, fifo_released_after

COMMANDS = [
    "init-ca",
    "request",
    "issue",
    "revoke",
    "crl",
    "trust-list",
    "show",
    "verify",
    "bootstrap",
]


def bdx(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(["pki", *args])
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


@pytest.mark.parametrize("command", COMMANDS)
def test_help_everywhere(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = bdx(capsys, command, "--help")
    assert code == 0 and "Usage" in out


def test_ca_workflow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    ca = tmp_path / "ca"
    code, out, _ = bdx(
        capsys,
        "init-ca",
        "--country",
        "TH",
        "--out",
        str(ca),
        "--passphrase-file",
        str(pw),
        "--json",
    )
    assert code == 0 and json.loads(out)["type"] == "certificate"
    assert stat.S_IMODE((ca / "ca.key").stat().st_mode) == 0o600
    node = tmp_path / "id"
    for kind, extra in (("tls", ["--dns", "node-id", "--ip", "127.0.0.1"]), ("signing", [])):
        code, out, err = bdx(
            capsys,
            "request",
            "--country",
            "id",
            "--node-name",
            "bdx-id",
            "--kind",
            kind,
            "--out",
            str(node),
            *extra,
            "--json",
        )
        assert code == 0, err
        assert stat.S_IMODE(Path(json.loads(out)["key"]).stat().st_mode) == 0o600
        code, out, err = bdx(
            capsys,
            "issue",
            "--ca",
            str(ca),
            "--csr",
            str(node / f"id-{kind}.csr"),
            "--kind",
            kind,
            "--days",
            "30",
            "--out",
            str(node / f"id-{kind}.pem"),
            "--passphrase-file",
            str(pw),
            "--json",
        )
        assert code == 0, err
        assert json.loads(out)["subject"] == f"CN=bdx-id-{kind},O=bdx,C=ID"
    tl, crl = tmp_path / "tl.jws", tmp_path / "crl.pem"
    code, out, err = bdx(
        capsys,
        "trust-list",
        "--ca",
        str(ca),
        "--out",
        str(tl),
        "--member",
        f"ID={node / 'id-tls.pem'},{node / 'id-signing.pem'}",
        "--passphrase-file",
        str(pw),
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["members"] == "ID"
    assert (
        bdx(capsys, "crl", "--ca", str(ca), "--out", str(crl), "--passphrase-file", str(pw))[0] == 0
    )
    verify = ["verify", "--trust-list", str(tl), "--root", str(ca / "ca.pem"), "--crl", str(crl)]
    code, out, err = bdx(capsys, *verify, str(node / "id-tls.pem"), "--country", "ID", "--json")
    assert code == 0, err
    assert json.loads(out)["country"] == "ID"
    code, _, err = bdx(capsys, *verify, str(node / "id-signing.pem"), "--usage", "tls")
    assert code == 5 and err.count("\n") == 1 and "[wrong_key_usage]" in err
    code, _, err = bdx(capsys, *verify, str(node / "id-tls.pem"), "--country", "TH")
    assert code == 5 and "[wrong_country]" in err
    # revoke, publish the next CRL, and the certificate is refused
    code, out, err = bdx(
        capsys,
        "revoke",
        "--ca",
        str(ca),
        "--cert",
        str(node / "id-tls.pem"),
        "--reason",
        "keyCompromise",
        "--passphrase-file",
        str(pw),
    )
    assert code == 0, err
    assert (
        bdx(capsys, "crl", "--ca", str(ca), "--out", str(crl), "--passphrase-file", str(pw))[0] == 0
    )
    code, _, err = bdx(capsys, *verify, str(node / "id-tls.pem"))
    assert code == 5 and "[revoked]" in err
    code, out, _ = bdx(capsys, "show", str(crl), "--json")
    assert json.loads(out)["number"] == 2
    code, out, _ = bdx(capsys, "show", str(node / "id-tls.csr"))
    assert "type: csr" in out
    for kind, usage in (("signing", "bdxMessageSigning (2.25."), ("tls", "serverAuth,clientAuth")):
        code, out, _ = bdx(capsys, "show", str(node / f"id-{kind}.pem"), "--json")
        assert json.loads(out)["extended_key_usage"].startswith(usage), out


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = tmp_path / "ca"
    pw = tmp_path / "pw"
    pw.write_text("right")
    assert (
        bdx(
            capsys,
            "init-ca",
            "--country",
            "TH",
            "--out",
            str(ca),
            "--passphrase-file",
            str(pw),
        )[0]
        == 0
    )
    request = ["request", "--country", "ID", "--out", str(tmp_path)]
    cases = [
        # a bad option value is a usage error naming the option (2), not bad input data (3)
        (
            ["init-ca", "--country", "Thailand", "--out", str(tmp_path / "x")],
            2,
            "Invalid value for --country: 'Thailand' is not an ISO 3166-1 alpha-2",
        ),
        (["request", "--country", "ZZZ", "--kind", "signing", "--out", str(tmp_path)], 2, "ZZZ"),
        ([*request, "--kind", "signing", "--node-name", "a b"], 2, "Invalid value for --node-name"),
        ([*request, "--kind", "tls", "--ip", "1.2.3"], 2, "Invalid value for --ip: '1.2.3'"),
        ([*request, "--kind", "tls"], 2, "--dns / --ip: a TLS CSR needs a DNS name or IP"),
        # host names in the preferred name syntax only; before, a Unicode name was a traceback
        # and a name with a space or a wildcard went into the CSR as given
        ([*request, "--kind", "tls", "--dns", "bücher.example"], 2, "A-label (xn--...)"),
        ([*request, "--kind", "tls", "--dns", "a b"], 2, "Invalid value for --dns: DNS name"),
        ([*request, "--kind", "tls", "--dns", "*.example"], 2, "no wildcard"),
        ([*request, "--kind", "tls", "--dns", "127.0.0.1"], 2, "give it as an IP address"),
        (
            ["trust-list", "--ca", str(ca), "--out", str(tmp_path / "t"), "--member", "ZZ=a,b"],
            2,
            "Invalid value for --member: 'ZZ'",
        ),
        (["bootstrap", "--countries", "TH,XYZ", "--out", str(tmp_path / "r")], 2, "'XYZ'"),
        (
            ["vkey", "--country", "XYZ", "--trust-list", "t", "--root", "r", "--crl", "c"],
            2,
            "Invalid value for --country: 'XYZ'",
        ),
        (["init-ca", "--country", "TH", "--out", str(ca)], 5, "file_exists"),
        (["crl", "--ca", str(ca), "--out", str(tmp_path / "c.pem")], 5, "passphrase_required"),
        (["crl", "--ca", str(tmp_path), "--out", str(tmp_path / "c.pem")], 3, "not_a_ca"),
        (["show", str(pw)], 3, "malformed"),  # bad input data
        (["show", str(tmp_path / "absent")], 4, "unreadable_file"),  # not found
        (["trust-list", "--ca", str(ca), "--out", str(tmp_path / "t"), "--member", "TH"], 2, "CC="),
        (["revoke", "--ca", str(ca), "--cert", str(pw), "--reason", "bored"], 2, "bored"),
        (["bootstrap", "--countries", "TH,TH", "--out", str(tmp_path / "r")], 2, "distinct"),
        # were OverflowError / FileNotFoundError tracebacks
        (
            ["init-ca", "--country", "TH", "--out", str(tmp_path / "y"), "--days", "9999999"],
            2,
            "36500",
        ),
        (
            [
                "trust-list",
                "--ca",
                str(ca),
                "--out",
                str(tmp_path / "t"),
                "--members-dir",
                str(tmp_path / "no"),
            ],
            2,
            "does not exist",
        ),
    ]
    for args, expected, text in cases:
        code, _, err = bdx(capsys, *args)
        assert code == expected and text in err, (args, err)
        if expected != 2:  # errors are one line; usage errors (2) are click's usual block
            assert err.strip().count("\n") == 0, err
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    bad_key = tmp_path / "bad-ca"
    bad_key.mkdir()
    for name in ("ca.pem", "ca.key"):
        (bad_key / name).write_bytes((ca / "ca.pem").read_bytes())  # a certificate as the key
    region = tmp_path / "half"
    (region / "ca").mkdir(parents=True)
    (region / "ca" / "ca.pem").write_bytes((ca / "ca.pem").read_bytes())  # no region.json
    cases = [  # files that are not what they should be: bad input (3), not refusals (5)
        (["revoke", "--ca", str(ca), "--cert", str(garbage), "--passphrase-file", str(pw)], 3),
        (["crl", "--ca", str(bad_key), "--out", str(tmp_path / "c.pem")], 3),
        (["bootstrap", "--countries", "TH", "--out", str(region), "--exist-ok"], 4),
    ]
    for args, expected in cases:
        code, _, err = bdx(capsys, *args)
        assert code == expected and err.strip().count("\n") == 0, (args, err)
    (ca / "state.json").write_text('{"v": 1, "issued": ')  # damaged
    crl = ["crl", "--ca", str(ca), "--out", str(tmp_path / "c.pem"), "--passphrase-file", str(pw)]
    code, _, err = bdx(capsys, *crl)
    assert code == 3 and "[bad_ca_state]" in err and err.strip().count("\n") == 0
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong")
    code, _, err = bdx(
        capsys,
        "crl",
        "--ca",
        str(ca),
        "--out",
        str(tmp_path / "c.pem"),
        "--passphrase-file",
        str(wrong),
    )
    assert code == 5 and "[bad_passphrase]" in err


def test_bootstrap_makes_a_usable_region(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "region"
    code, stdout, err = bdx(
        capsys, "bootstrap", "--countries", "TH,ID,MY", "--out", str(out), "--json"
    )
    assert code == 0, err
    manifest = json.loads(stdout)
    assert manifest["countries"] == "TH,ID,MY"
    assert json.loads((out / "region.json").read_text())["node_my"] == "nodes/my"
    for cc in ("th", "id", "my"):
        for kind in ("tls", "signing"):
            assert stat.S_IMODE((out / "nodes" / cc / f"{kind}.key").stat().st_mode) == 0o600
            code, stdout, err = bdx(
                capsys,
                "verify",
                "--trust-list",
                str(out / "trust-list.jws"),
                "--root",
                str(out / "root.pem"),
                "--crl",
                str(out / "crl.pem"),
                str(out / "nodes" / cc / f"{kind}.pem"),
                "--usage",
                kind,
                "--country",
                cc.upper(),
                "--json",
            )
            assert code == 0, err
    code, _, err = bdx(capsys, "bootstrap", "--countries", "TH", "--out", str(out))
    assert code == 3 and "[file_exists]" in err
    # a one-shot compose service re-run keeps the existing region
    code, stdout, _ = bdx(
        capsys, "bootstrap", "--countries", "TH", "--out", str(out), "--exist-ok", "--json"
    )
    assert code == 0 and json.loads(stdout)["existing"] is True
    code, _, err = bdx(
        capsys,
        "verify",
        "--trust-list",
        str(out / "absent.jws"),
        "--root",
        str(out / "root.pem"),
        "--crl",
        str(out / "crl.pem"),
        str(out / "root.pem"),
    )
    assert code == 4 and "[unreadable_file]" in err  # not found
    # a signed message made with the region's TH signing key shows its sender
    th = out / "nodes" / "th"
    token = jws.sign(
        {"v": 1, "sender": "TH", "kind": "query"},
        load_private_key(th / "signing.key"),
        [load_certificate(th / "signing.pem")],
    )
    (tmp_path / "msg.jws").write_text(token)
    code, stdout, _ = bdx(capsys, "show", str(tmp_path / "msg.jws"), "--json")
    shown = json.loads(stdout)
    assert (shown["type"], shown["sender"], shown["typ"]) == ("jws", "TH", "bdx-msg+jws")


def test_vkey_gives_the_audit_keys_from_the_pki(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An auditor's keys come from the region's trust list, not from a file the audited
    node's operator writes: a checkpoint TH's log signs verifies under TH's key, and a
    cosignature by ID's witness under ID's witness key; revoked members get none."""
    from certs.pki.ca import CertificateAuthority
    from certs.translog import SigningKey, VerifyingKey
    from certs.translog.checkpoint import Checkpoint, SignedCheckpoint, cosign
    from node.exchange.witnessing import log_origin, witness_name

    out = tmp_path / "region"
    assert bdx(capsys, "bootstrap", "--countries", "TH,ID", "--out", str(out))[0] == 0
    anchors = [
        *("--trust-list", str(out / "trust-list.jws"), "--root", str(out / "root.pem")),
        *("--crl", str(out / "crl.pem")),
    ]
    code, log_vkey, err = bdx(capsys, "vkey", "--country", "TH", *anchors)
    assert code == 0, err
    code, witness_vkey, err = bdx(capsys, "vkey", "--country", "ID", "--witness", *anchors)
    assert code == 0, err
    checkpoint = Checkpoint(log_origin("TH"), 1, bytes(32), 1)
    th = SigningKey(log_origin("TH"), load_private_key(out / "nodes" / "th" / "signing.key"))
    note = SignedCheckpoint.sign(checkpoint, th)
    log_key, purpose = VerifyingKey.from_vkey(log_vkey)
    assert purpose == "note"
    note.verify(log_key)
    witness = SigningKey(witness_name("ID"), load_private_key(out / "nodes" / "id" / "signing.key"))
    key, purpose = VerifyingKey.from_vkey(witness_vkey)
    assert purpose == "cosignature"
    cosign(checkpoint, witness, 1).verify(checkpoint, key, now=2)
    ca = CertificateAuthority.open(out / "ca")
    ca.revoke(load_certificate(out / "nodes" / "th" / "signing.pem"))
    (out / "crl.pem").write_bytes(crl_pem(ca.crl()))
    code, _, err = bdx(capsys, "vkey", "--country", "TH", *anchors)
    assert code == 5 and "[revoked]" in err


def test_vkey_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`vkey --json` (it had none) gives the member, the key's purpose and the vkey text that
    plain `vkey` prints; a refusal under --json prints nothing on stdout, one line on stderr."""
    from certs.pki.ca import CertificateAuthority

    out = tmp_path / "region"
    assert bdx(capsys, "bootstrap", "--countries", "TH,ID", "--out", str(out))[0] == 0
    anchors = [
        *("--trust-list", str(out / "trust-list.jws"), "--root", str(out / "root.pem")),
        *("--crl", str(out / "crl.pem")),
    ]
    for extra, purpose in (([], "note"), (["--witness"], "cosignature")):
        code, plain, err = bdx(capsys, "vkey", "--country", "th", *extra, *anchors)
        assert code == 0, err
        code, shown, err = bdx(capsys, "vkey", "--country", "th", *extra, *anchors, "--json")
        assert code == 0, err
        assert json.loads(shown) == {
            "country": "TH",
            "purpose": purpose,
            "vkey": plain.strip(),
            "vkeys": [plain.strip()],
        }
    ca = CertificateAuthority.open(out / "ca")
    ca.revoke(load_certificate(out / "nodes" / "th" / "signing.pem"))
    (out / "crl.pem").write_bytes(crl_pem(ca.crl()))
    code, shown, err = bdx(capsys, "vkey", "--country", "TH", *anchors, "--json")
    assert (code, shown) == (5, "") and err.rstrip().endswith("[revoked]"), err
    assert len(err.splitlines()) == 1


def test_init_ca_takes_country_as_the_other_commands_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`init-ca` took `--country-name` where `request` and `vkey` take `--country`: `--country`
    now, the old spelling kept (hidden from --help, with a warning on stderr); both, or
    neither, is a usage error."""
    code, out, err = bdx(capsys, "init-ca", "--country", "TH", "--out", str(tmp_path / "a"))
    assert code == 0 and "C=TH" in out and err == "", err
    code, help_text, _ = bdx(capsys, "init-ca", "--help")
    assert code == 0 and "--country" in help_text and "--country-name" not in help_text
    old = ["init-ca", "--country-name", "TH", "--out", str(tmp_path / "b"), "--json"]
    code, out, err = bdx(capsys, *old)
    assert code == 0 and json.loads(out)["type"] == "certificate", err
    assert err == "bdx: warning: --country-name is deprecated; use --country\n"
    for args in (
        ["init-ca", "--country", "TH", "--country-name", "TH", "--out", str(tmp_path / "c")],
        ["init-ca", "--out", str(tmp_path / "d")],
    ):
        code, _, err = bdx(capsys, *args)
        assert code == 2 and "--country" in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_outputs_in_new_folders_and_no_phantom_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`issue`, `crl` and `trust-list` make their output's folder, as `request` does; an output
    that cannot be written is refused before the CA records a certificate or a number."""
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    ca = tmp_path / "ca"
    common = ["--passphrase-file", str(pw)]
    assert bdx(capsys, "init-ca", "--country", "TH", "--out", str(ca), *common)[0] == 0
    node = tmp_path / "th"
    for kind in ("tls", "signing"):
        extra = ["--ip", "127.0.0.1"] if kind == "tls" else []
        args = ["request", "--country", "th", "--kind", kind, "--out", str(node), *extra]
        assert bdx(capsys, *args)[0] == 0
    state = (ca / "state.json").read_text()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    for args in (
        [
            "issue",
            "--csr",
            str(node / "th-tls.csr"),
            "--kind",
            "tls",
            "--out",
            str(blocked / "x.pem"),
        ],
        ["crl", "--out", str(blocked / "crl.pem")],
        ["issue", "--csr", str(node / "th-tls.csr"), "--kind", "tls", "--out", str(tmp_path)],
    ):
        code, _, err = bdx(capsys, *args, "--ca", str(ca), *common)
        assert code == 2 and "--out" in err and "Traceback" not in err, args
    assert (ca / "state.json").read_text() == state  # nothing recorded
    for kind in ("tls", "signing"):
        out = tmp_path / "members" / "th" / f"{kind}.pem"
        args = ["issue", "--csr", str(node / f"th-{kind}.csr"), "--kind", kind, "--out", str(out)]
        assert bdx(capsys, *args, "--ca", str(ca), *common)[0] == 0 and out.exists()
    region = tmp_path / "region"
    assert bdx(capsys, "crl", "--out", str(region / "crl.pem"), "--ca", str(ca), *common)[0] == 0
    code, _, err = bdx(
        capsys, "trust-list", "--members-dir", str(tmp_path / "members"),
        "--out", str(region / "trust-list.jws"), "--ca", str(ca), *common,
    )  # fmt: skip
    assert code == 0 and (region / "trust-list.jws").exists(), err


def test_an_output_folder_that_cannot_be_made_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file where the CA, request or region folder goes, or on its way, was a
    FileExistsError or NotADirectoryError traceback (exit 1)."""
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    for out in (blocked, blocked / "sub"):
        for args in (
            ["init-ca", "--country", "TH"],
            ["request", "--country", "TH", "--kind", "tls", "--ip", "127.0.0.1"],
            ["bootstrap", "--countries", "TH,MY"],
        ):
            code, _, err = bdx(capsys, *args, "--out", str(out))
            assert code == 2 and "--out" in err and str(out) in err, (args, out, err)
    assert blocked.read_text() == "" and sorted(tmp_path.iterdir()) == [blocked]


def test_bootstrap_text_output_is_stdout_and_its_progress_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The progress bar was drawn on stdout: redirected, the text began with a blank line."""
    code, out, err = bdx(capsys, "bootstrap", "--countries", "TH,MY", "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert out.startswith(f"out: {tmp_path / 'r'}\n"), out[:80]


def test_trust_list_lists_a_renewed_member_with_both_pairs_and_no_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A country given again (here beside --members-dir) is listed with its old and new
    certificates (it was refused: "TH is listed twice"); a third pair is refused in one line."""
    region = tmp_path / "region"
    assert bdx(capsys, "bootstrap", "--countries", "TH,ID", "--out", str(region))[0] == 0
    ca = CertificateAuthority.open(region / "ca")
    renewed = []
    for n in range(2):
        node = make_node(ca, "TH")
        folder = tmp_path / f"th-{n}"
        folder.mkdir()
        write_public(folder / "tls.pem", certificate_pem(node.tls_cert))
        write_public(folder / "signing.pem", certificate_pem(node.signing_cert))
        renewed += ["--member", f"TH={folder / 'tls.pem'},{folder / 'signing.pem'}"]
    out = tmp_path / "tl.jws"
    common = ["trust-list", "--ca", str(region / "ca"), "--members-dir", str(region / "nodes")]
    code, _, err = bdx(capsys, *common, *renewed[:2], "--out", str(out))
    assert code == 0, err
    root = load_certificate(region / "root.pem")
    listed = load_trust_list(out.read_bytes(), root, now=dt.datetime.now(dt.UTC)).member("TH")
    assert listed is not None and len(listed.tls) == len(listed.signing) == 2
    # `vkey` gives both of a renewed member's keys, the newest (listed last) first
    anchors = ["--trust-list", str(out), "--root", str(region / "root.pem")]
    anchors += ["--crl", str(region / "crl.pem")]
    code, shown, err = bdx(capsys, "vkey", "--country", "TH", *anchors, "--json")
    assert code == 0, err
    newest, oldest = (c.public_key() for c in reversed(listed.signing))
    keys = [VerifyingKey.from_vkey(v)[0].public_key for v in json.loads(shown)["vkeys"]]
    assert keys == [newest, oldest]
    code, _, err = bdx(capsys, *common, *renewed, "--out", str(tmp_path / "three.jws"))
    assert code == 5 and err.count("\n") == 1 and "TH has 3 tls certificates listed" in err


def test_a_fifo_or_device_is_refused_at_once_and_a_file_read_no_further_than_its_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bdx pki show`, a `--passphrase-file` and every key, certificate, CRL and trust list
    were read whole: a FIFO hung the command forever, /dev/zero ate its memory."""
    ca = tmp_path / "ca"
    assert bdx(capsys, "init-ca", "--country", "TH", "--out", str(ca))[0] == 0
    fifo = tmp_path / "fifo"
    with fifo_released_after(fifo) as took:
        code, _, err = bdx(capsys, "show", str(fifo))
    assert took[0] < FIFO_WAIT_S
    assert code == 3 and f"{fifo}: not a regular file [unreadable_file]" in err, err
    crl = ["crl", "--ca", str(ca), "--out", str(tmp_path / "c.pem"), "--passphrase-file"]
    for args in (["show", "/dev/zero"], [*crl, "/dev/zero"], [*crl, str(fifo)]):
        code, _, err = bdx(capsys, *args)
        assert code == 3 and "[unreadable_file]" in err and err.count("\n") == 1, (args, err)
    big = tmp_path / "big.pem"
    big.write_bytes(b"\0" * (MAX_PKI_FILE_BYTES + 1))
    code, _, err = bdx(capsys, "show", str(big))
    assert code == 3 and "[file_too_large]" in err and err.count("\n") == 1, err
    big.write_bytes(b"\n" * (MAX_PASSPHRASE_FILE_BYTES + 1))
    code, _, err = bdx(capsys, *crl, str(big))
    assert code == 3 and "[file_too_large]" in err and err.count("\n") == 1, err
