"""`bdx serve` refusing a configuration: exit 2 and one line on stderr, never a traceback
(README, "Exit codes"), before anything listens."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from node_support import free_port, self_signed_tls, wait_for_health

from certs.pki.params import MAX_PEM_FILE_BYTES

BDX = [sys.executable, "-c", "from node.cli import main; main()"]


def serve(tmp_path: Path, *args: str, timeout: float = 30, **env: str) -> tuple[int, str]:
    """``bdx serve ARGS`` with only ``env``'s BDX_* variables (BDX_PORT a free port unless
    given): (exit code, stderr)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("BDX_")}
    base |= {"BDX_DATA_DIR": str(tmp_path / "data"), "BDX_PORT": str(free_port()), **env}
    try:
        done = subprocess.run(
            [*BDX, "serve", *args],
            env=base,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("bdx serve started on a configuration it should refuse")
    return done.returncode, done.stderr


def refused(tmp_path: Path, *args: str, **env: str) -> str:
    """The one line of a ``bdx serve`` that refused its configuration (exit 2)."""
    code, err = serve(tmp_path, *args, **env)
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("bdx: error: "), err
    return err


TOML_BODY = 'environment = "production"\ncountry = "TH"\nhost = "0.0.0.0"\n'


@pytest.mark.parametrize("name", ["node.conf", "node.TOML", "node.Toml"])
def test_a_toml_config_file_is_read_whatever_its_name(tmp_path: Path, name: str) -> None:
    """node.conf or node.TOML was read as an empty dotenv file: the node started as a
    development node of country XX on 0.0.0.0."""
    config = tmp_path / name
    config.write_text(TOML_BODY)
    err = refused(tmp_path, "-c", str(config))
    if name.lower().endswith(".toml"):  # read as TOML: production, without TLS
        assert "refusing production settings" in err and "[unsafe_config]" in err
    else:  # read as dotenv: TOML lines are not BDX_NAME=VALUE
        assert f"config file {config}: environment is not a BDX_* setting" in err
        assert "production" not in err  # the key, never its value


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ENVIRONMENT=production\nCOUNTRY=TH\n", "ENVIRONMENT is not a BDX_* setting"),
        ("BDX_COUNTRY=TH\nPORT=1\n", "PORT is not a BDX_* setting"),
        ("BDX_COUNTRY=TH\n\ncorrect horse battery staple\n", "line 3 is not BDX_NAME=VALUE"),
        ("# nothing here\n", "sets no setting"),
    ],
)
def test_a_dotenv_config_file_holds_bdx_settings_only(
    tmp_path: Path, text: str, fragment: str
) -> None:
    """Keys without the BDX_ prefix were dropped: ENVIRONMENT=production started a
    development node. A line that is not KEY=VALUE (here a passphrase) is not quoted."""
    config = tmp_path / "node.env"
    config.write_text(text)
    err = refused(tmp_path, "-c", str(config))
    assert fragment in err and "[bad_config]" in err
    assert "production" not in err and "horse" not in err


def test_an_empty_toml_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("# all defaults?\n")
    assert "sets no setting" in refused(tmp_path, "-c", str(config))


def test_a_dotenv_config_file_in_lower_case_still_works(tmp_path: Path) -> None:
    """pydantic-settings reads BDX_* keys in any case; so does the key check."""
    config = tmp_path / "node.env"
    config.write_text("bdx_environment=production\n")
    assert "refusing production settings" in refused(tmp_path, "-c", str(config))


def test_a_bad_environment_variable_is_named_as_such(tmp_path: Path) -> None:
    """It was 'cannot read config file None: error parsing value for field "peers"'."""
    err = refused(tmp_path, BDX_PEERS="MY=https://x")
    assert "environment variable BDX_PEERS is invalid" in err and "config file" not in err
    assert "https://x" not in err


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BDX_CHECKPOINT_INTERVAL_S", "1e-6"),
        ("BDX_CHECKPOINT_INTERVAL_S", "inf"),
        ("BDX_GALLERY_ERASE_INTERVAL_S", "nan"),
    ],
)
def test_intervals_are_finite_and_not_a_busy_loop(tmp_path: Path, name: str, value: str) -> None:
    """checkpoint_interval_s = 1e-6 signed 1,415 checkpoints in 15 s and sent 2,828 witness
    requests; inf was accepted too."""
    err = refused(tmp_path, **{name: value})
    assert f"invalid settings: {name.removeprefix('BDX_').lower()}:" in err


def test_there_is_no_client_ca_setting(tmp_path: Path) -> None:
    """tls_client_ca_file was read by nothing (peers' client CA is pki_dir's root.pem): a node
    started with it naming a missing file."""
    config = tmp_path / "node.toml"
    config.write_text(f'tls_client_ca_file = "{tmp_path / "absent.pem"}"\n')
    err = refused(tmp_path, "-c", str(config))
    assert "tls_client_ca_file: Extra inputs are not permitted" in err


@pytest.fixture
def production_pki(tmp_path: Path) -> dict[str, str]:
    """BDX_* variables of a production TH node with a region's pki_dir (the CA's folder left
    out, as README says) and TH's rules; modes set as `bdx pki bootstrap` makes them."""
    from certs.pki.bootstrap import build_region, write_region
    from node.demo.region import rules_text

    region = tmp_path / "region"
    write_region(build_region(["TH", "MY"]), region)
    shutil.rmtree(region / "ca")
    for path in [region, *region.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o600 if path.suffix == ".key" else 0o644)
    rules = tmp_path / "rules.toml"
    rules.write_text(rules_text("TH"))
    (tmp_path / "data").mkdir(mode=0o700)
    cert, key = self_signed_tls(tmp_path)
    return {
        "BDX_ENVIRONMENT": "production",
        "BDX_COUNTRY": "TH",
        "BDX_TLS_CERT_FILE": str(cert),
        "BDX_TLS_KEY_FILE": str(key),
        "BDX_PKI_DIR": str(region),
        "BDX_POLICY_FILE": str(rules),
        "BDX_PEER_PORT": str(free_port()),
    }


def test_production_accepts_a_bootstrapped_pki_dir(
    tmp_path: Path, production_pki: dict[str, str]
) -> None:
    """The settings pass; the next refusal is the database not yet upgraded."""
    assert "[schema_out_of_date]" in refused(tmp_path, **production_pki)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ("nodes/th/tls.key:644", "private keys nodes/th/tls.key readable by other users"),
        ("nodes/th/signing.key:640", "private keys nodes/th/signing.key readable by other"),
        (".:777", "the folder itself writable by other users"),
        ("nodes/th:775", "nodes/th writable by other users"),
        ("trust-list.jws:666", "trust-list.jws writable by other users"),
        ("ca/ca.key:600", "holds the CA's key ca/ca.key"),
    ],
)
def test_production_refuses_an_unsafe_pki_dir(
    tmp_path: Path, production_pki: dict[str, str], change: str, fragment: str
) -> None:
    """A production node started with its own keys at 0644, pki_dir at 0777 and the CA's key
    in pki_dir; only file existence was checked there."""
    name, mode = change.split(":")
    path = Path(production_pki["BDX_PKI_DIR"], name)
    if not path.exists():
        path.parent.mkdir()
        path.write_text("the CA's key")
    path.chmod(int(mode, 8))
    err = refused(tmp_path, **production_pki)
    assert "refusing production settings" in err and fragment in err, err


def test_production_refuses_a_rules_file_others_can_write(
    tmp_path: Path, production_pki: dict[str, str]
) -> None:
    Path(production_pki["BDX_POLICY_FILE"]).chmod(0o646)
    err = refused(tmp_path, **production_pki)
    assert f"policy_file {production_pki['BDX_POLICY_FILE']} is writable by other" in err


@pytest.fixture
def development_pki(production_pki: dict[str, str]) -> dict[str, str]:
    """The same TH node in development: plain HTTP, the database upgraded at start."""
    env = {k: v for k, v in production_pki.items() if not k.startswith("BDX_TLS_")}
    return {**env, "BDX_ENVIRONMENT": "development"}


def test_the_api_and_the_peer_listener_need_a_port_each(
    tmp_path: Path, development_pki: dict[str, str]
) -> None:
    """It was exit 3 with 71 lines of tracebacks."""
    port = str(free_port())
    err = refused(tmp_path, **{**development_pki, "BDX_PORT": port, "BDX_PEER_PORT": port})
    assert f"port and peer_port are both {port}" in err and "[bad_config]" in err


def test_one_port_under_two_names_is_found_when_bound(
    tmp_path: Path, development_pki: dict[str, str]
) -> None:
    port = str(free_port())
    env = {**development_pki, "BDX_PORT": port, "BDX_PEER_PORT": port, "BDX_PEER_HOST": "localhost"}
    err = refused(tmp_path, **env)
    assert f"cannot listen on localhost:{port}" in err and "[port_unavailable]" in err


def test_a_certificate_needs_its_key(tmp_path: Path) -> None:
    """uvicorn failed with some 60 lines of traceback, exit 1; a key alone served plain HTTP."""
    cert, key = self_signed_tls(tmp_path)
    assert "set together or not at all" in refused(tmp_path, BDX_TLS_CERT_FILE=str(cert))
    assert "set together or not at all" in refused(tmp_path, BDX_TLS_KEY_FILE=str(key))


def tls_pair(tmp_path: Path, what: str) -> tuple[Path, Path]:
    """A certificate and key where ``what`` is wrong: missing, garbage, mismatched, encrypted."""
    cert, key = self_signed_tls(tmp_path)
    if what == "missing":
        return tmp_path / "absent.crt", key
    if what == "garbage":
        (tmp_path / "garbage.crt").write_text("not a certificate\n")
        return tmp_path / "garbage.crt", key
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = self_signed_tls(other)
    if what == "mismatched":
        return cert, other_key
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    encryption = serialization.BestAvailableEncryption(b"passphrase")
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
    )
    return cert, key


@pytest.mark.parametrize(
    ("environment", "what", "fragment"),
    [
        ("development", "missing", "cannot read tls_cert_file"),
        ("development", "garbage", "tls_cert_file is not a PEM certificate"),
        ("development", "mismatched", "tls_key_file is not the key of tls_cert_file"),
        ("development", "encrypted", "tls_key_file is encrypted"),
        ("production", "garbage", "tls_cert_file is not a PEM certificate"),
        ("production", "mismatched", "tls_key_file is not the key of tls_cert_file"),
    ],
)
def test_the_api_certificate_and_key_are_loaded_before_start_up(
    tmp_path: Path, environment: str, what: str, fragment: str
) -> None:
    """A missing certificate (development), an unparsable one or another certificate's key
    (production too: only file existence was checked) were uvicorn tracebacks, exit 1."""
    cert, key = tls_pair(tmp_path, what)
    env = {"BDX_TLS_CERT_FILE": str(cert), "BDX_TLS_KEY_FILE": str(key), "BDX_COUNTRY": "TH"}
    if environment == "production":  # the TLS check comes first, the database's after it
        (tmp_path / "data").mkdir(mode=0o700)
        base = {k: v for k, v in os.environ.items() if not k.startswith("BDX_")}
        base["BDX_DATA_DIR"] = str(tmp_path / "data")
        migrated = subprocess.run([*BDX, "db", "upgrade"], env=base, capture_output=True)
        assert migrated.returncode == 0, migrated.stderr
    err = refused(tmp_path, BDX_ENVIRONMENT=environment, **env)
    assert fragment in err and "[bad_tls]" in err


def test_a_fifo_or_device_as_the_api_certificate_or_key_is_refused_at_once(
    tmp_path: Path,
) -> None:
    """bdx serve read tls_cert_file and tls_key_file whole: a FIFO hung it before it started
    (forever), /dev/zero ate its memory. Each is one line, exit 2, at once."""
    cert, key = self_signed_tls(tmp_path)
    fifo = tmp_path / "fifo.pem"
    big = tmp_path / "big.pem"
    big.write_bytes(b"\n" * (MAX_PEM_FILE_BYTES + 1))
    cases = [
        ("tls_cert_file", fifo, key, "not a regular file [bad_tls]"),
        ("tls_key_file", cert, fifo, "not a regular file [bad_tls]"),
        ("tls_cert_file", Path("/dev/zero"), key, "not a regular file [bad_tls]"),
        ("tls_key_file", cert, big, "over the limit of 1048576 bytes [file_too_large]"),
    ]
    os.mkfifo(fifo)  # no writer: a bdx serve waiting on it fails the test when serve() times out
    for name, cert_file, key_file, fragment in cases:
        err = refused(tmp_path, BDX_TLS_CERT_FILE=str(cert_file), BDX_TLS_KEY_FILE=str(key_file))
        path = cert_file if name == "tls_cert_file" else key_file
        assert f"cannot read {name} {path}: " in err and fragment in err, err


@pytest.mark.parametrize(
    ("rules", "fragment"),
    [
        (None, "cannot read (no such file) [policy_not_found]"),
        ('version = "x"\ncountry = "TH"\n[peers.MY]\npurposes = ["nope"]\n', "[invalid_policy]"),
        ("version = \n", "not valid TOML"),
        ("MY", "holds MY's rules, this node is TH [policy_country_mismatch]"),
    ],
)
def test_the_rules_file_is_read_before_start_up(
    tmp_path: Path, development_pki: dict[str, str], rules: str | None, fragment: str
) -> None:
    """A missing or invalid rules file was exit 3 with some 150 lines of lifespan traceback
    while the peer listener already took connections; another country's rules were used."""
    from node.demo.region import rules_text

    path = Path(development_pki["BDX_POLICY_FILE"])
    if rules is None:
        path.unlink()
    else:
        path.write_text(rules_text(rules) if rules == "MY" else rules)
    err = refused(tmp_path, **development_pki)
    assert f"policy_file {path}" in err and fragment in err


def test_a_short_hit_secret_is_refused_before_start_up(
    tmp_path: Path, development_pki: dict[str, str]
) -> None:
    secret = tmp_path / "hit.key"
    secret.write_bytes(b"12345")
    secret.chmod(0o600)
    err = refused(tmp_path, **development_pki, BDX_HIT_SECRET_FILE=str(secret))
    assert f"hit_secret_file {secret} holds 5 bytes" in err and "12345" not in err


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("postgres://bdx:hunter2@127.0.0.1/bdx", "postgres is not supported"),
        ("mysql://bdx:hunter2@127.0.0.1/bdx", "mysql is not supported"),
        ("postgresql+psycopg2://bdx:hunter2@127.0.0.1/bdx", "psycopg2 is not installed"),
    ],
)
def test_an_unusable_database_url_is_one_line(tmp_path: Path, url: str, fragment: str) -> None:
    """They were tracebacks (NoSuchModuleError, ModuleNotFoundError); the password is not
    repeated."""
    err = refused(tmp_path, BDX_DATABASE_URL=url)
    assert fragment in err and "[bad_database_url]" in err and "hunter2" not in err


def started_output(tmp_path: Path, host: str, **extra: str) -> str:
    """stderr of a development ``bdx serve`` on ``host`` (``extra`` in its environment) up to
    its first /health answer."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BDX_")}
    env |= {"BDX_DATA_DIR": str(tmp_path / host), "BDX_HOST": host, "BDX_PORT": str(port)}
    env |= extra
    proc = subprocess.Popen([*BDX, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_health(proc, port, 60)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    return err


def test_plain_http_beyond_loopback_is_warned_about(tmp_path: Path) -> None:
    """A development node on 0.0.0.0 without TLS started without a word."""
    warnings = [
        line for line in started_output(tmp_path, "0.0.0.0").splitlines() if "warning" in line
    ]
    assert warnings == [
        "bdx: warning: the API listens on 0.0.0.0 without TLS: tokens and images cross the "
        "network in clear (set tls_cert_file and tls_key_file)"
    ]
    assert "bdx: warning" not in started_output(tmp_path, "127.0.0.1")


def test_a_variable_no_setting_reads_is_named(tmp_path: Path) -> None:
    """``BDX_ENVIRONMNET=production`` (misspelt) started a development node without a word;
    the warning names the variable, never its value. So did ``BDX_POLICY``, which the node
    never read (its rules file is ``BDX_POLICY_FILE``; ``bdx policy`` reads both)."""
    err = started_output(
        tmp_path,
        "127.0.0.1",
        BDX_ENVIRONMNET="production",
        BDX_TOKEN="bdx_secret-token",
        BDX_TOKEN_FILE="/srv/secret-token",  # the CLI clients' (README): no setting's
        BDX_POLICY="/srv/secret-rules.toml",
    )
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == ["bdx: warning: no setting reads BDX_ENVIRONMNET, BDX_POLICY"]
    assert "production" not in err and "secret" not in err


def test_a_stale_crl_leaves_the_api_serving_and_the_exchange_refusing(tmp_path: Path) -> None:
    """The node's CRL went stale a day ago: `bdx serve` exited 5, so officers, operators and
    auditors lost the API with the peer exchange. It serves the API now, says at start that
    the exchange refuses and why (ERROR), and /health says so with the date."""
    from certs.pki import params
    from certs.pki.bootstrap import write_region
    from certs.pki.revocation import crl_pem
    from node.demo.region import rules_text
    from tests.exchange.service_support import dated_region

    stale = datetime.now(UTC) - params.CRL_VALIDITY - params.DEFAULT_GRACE - timedelta(days=1)
    region = dated_region(["TH", "MY"], crl_issued=stale)
    write_region(region, tmp_path / "region")
    rules = tmp_path / "rules.toml"
    rules.write_text(rules_text("TH"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BDX_")}
    env |= {
        "BDX_COUNTRY": "TH",
        "BDX_DATA_DIR": str(tmp_path / "data"),
        "BDX_PORT": str(port),
        "BDX_PEER_PORT": str(free_port()),
        "BDX_PKI_DIR": str(tmp_path / "region"),
        "BDX_POLICY_FILE": str(rules),
        "BDX_CHECKPOINT_INTERVAL_S": "10",  # housekeeping rounds every 10 s
    }
    proc = subprocess.Popen([*BDX, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_health(proc, port, 60)
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
        # a fresh CRL: the next round takes it, and the node says it is in order again
        (tmp_path / "region" / "crl.pem").write_bytes(crl_pem(region.ca.crl()))
        deadline = time.monotonic() + 60
        while httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()["status"] != "ok":
            assert time.monotonic() < deadline, "the fresh CRL was not taken"
            time.sleep(0.5)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert health["status"] == "degraded"
    assert [(n["document"], n["reason"]) for n in health["pki"]] == [("crl", "stale_crl")]
    said = [line for line in err.splitlines() if "[own_stale_crl]" in line]
    assert len(said) == 1 and said[0].startswith("ERROR: "), err
    assert "the peer exchange refuses every query" in said[0]
    # the INFO line that ends it reaches the operator too (the node's INFO lines were dropped)
    again = [line for line in err.splitlines() if "in order again" in line]
    assert again == ["INFO:     this node's CRL is in order again"], err
    # SIGTERM stops the node in order (ServerPair's handlers): uvicorn's re-raised it once
    # the API server had stopped, killing the process (-15) before the peer listener's wait
    assert proc.returncode == 0, err
    assert "Application shutdown complete" in err
