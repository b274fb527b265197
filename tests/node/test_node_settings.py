"""Settings: sources, validation, and one test per production refusal."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.errors import ConfigError
from node.settings import MAX_CONFIG_FILE_BYTES, Settings, load_settings
from tests.fifo_support import FIFO_WAIT_S, fifo_released_after


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("BDX_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
def safe(tmp_path: Path) -> dict[str, Any]:
    """Production settings that pass every check."""
    cert, key = tmp_path / "node.crt", tmp_path / "node.key"
    cert.write_text("cert")
    key.write_text("key")
    key.chmod(0o600)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    return {
        "environment": "production",
        "country": "de",
        "data_dir": data,
        "tls_cert_file": cert,
        "tls_key_file": key,
    }


def refusal(**values: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(**values)
    assert info.value.reason == "unsafe_config"
    return info.value.message


def test_defaults_are_a_zero_setup_development_node(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path)
    assert s.environment == "development"
    assert s.db_url == f"sqlite:///{tmp_path / 'bdx.sqlite3'}"
    assert s.gallery_path == tmp_path / "gallery"
    assert s.sqlite_path == tmp_path / "bdx.sqlite3"


def test_safe_production_settings_load(safe: dict[str, Any]) -> None:
    s = load_settings(**safe)
    assert s.country == "DE"
    assert s.unsafe_reasons() == []


def test_environment_beats_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "node.toml"
    config.write_text('country = "fr"\nport = 9000\nsearch_fmr = 0.001\n')
    monkeypatch.setenv("BDX_PORT", "9100")
    s = load_settings(config)
    assert (s.country, s.port, s.search_fmr) == ("FR", 9100, 0.001)


def test_dotenv_file_and_bdx_config_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "node.env"
    config.write_text("BDX_COUNTRY=nl\nBDX_WORKER_THREADS=2\n")
    monkeypatch.setenv("BDX_CONFIG", str(config))
    s = load_settings()
    assert (s.country, s.worker_threads) == ("NL", 2)


def test_config_file_paths_are_taken_from_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative path in a config file was read from the working directory: a service
    manager starting ``bdx serve --config /etc/bdx/node.toml`` in ``/`` got ``/var``."""
    folder = tmp_path / "etc"
    folder.mkdir()
    config = folder / "node.toml"
    config.write_text(
        'data_dir = "state"\npki_dir = "../region"\npolicy_file = "rules.toml"\n'
        f'tls_key_file = "{tmp_path / "abs.key"}"\ntls_cert_file = "tls/node.crt"\n'
        'database_url = "sqlite:///db/node.sqlite3"\n'
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    s = load_settings(config)
    assert s.data_dir == folder / "state"
    assert s.gallery_dir == folder / "state" / "gallery"
    assert s.pki_dir == folder / "../region"
    assert s.policy_file == folder / "rules.toml"
    assert (s.tls_key_file, s.tls_cert_file) == (tmp_path / "abs.key", folder / "tls/node.crt")
    assert s.sqlite_path == folder / "db" / "node.sqlite3"


def test_dotenv_config_paths_are_taken_from_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "etc" / "node.env"
    config.parent.mkdir()
    config.write_text("BDX_DATA_DIR=state\nBDX_HIT_SECRET_FILE=keys/hit.key\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings(config)
    assert (s.data_dir, s.hit_secret_file) == (
        config.parent / "state",
        config.parent / "keys/hit.key",
    )
    assert s.sqlite_path == config.parent / "state" / "bdx.sqlite3"


@pytest.mark.parametrize(
    ("line", "state"),
    [
        ('data_dir = "state"', "state"),
        ('database_url = "sqlite:///db/n@1.sqlite3"', "db/n@1.sqlite3"),
    ],
)
def test_state_left_where_relative_paths_were_read_before_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, state: str
) -> None:
    """An existing node whose config file named ``data_dir = "state"`` kept its state in the
    working directory; read from the file's folder, it would silently start an empty node
    (a fresh database, a new hit secret, no earlier log keys). It is refused until moved."""
    config = tmp_path / "etc" / "node.toml"
    config.parent.mkdir()
    config.write_text(line + "\n")
    work, moved = tmp_path / "srv", config.parent / state
    (work / state).parent.mkdir(parents=True)
    (work / state).mkdir() if state == "state" else (work / state).write_bytes(b"")
    monkeypatch.chdir(work)
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert info.value.reason == "moved_state"
    assert str(work / state) in info.value.message and str(moved) in info.value.message
    moved.parent.mkdir(exist_ok=True)
    (work / state).rename(moved)
    settings = load_settings(config)
    # the file's name as typed, not percent-quoted: the production checks look at that file
    assert settings.sqlite_path == (moved if state != "state" else moved / "bdx.sqlite3")


def test_environment_paths_stay_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "etc" / "node.toml"
    config.parent.mkdir()
    config.write_text('data_dir = "state"\n')
    monkeypatch.setenv("BDX_DATA_DIR", "here")
    assert load_settings(config).data_dir == Path("here")
    monkeypatch.delenv("BDX_DATA_DIR")
    monkeypatch.setenv("BDX_DATABASE_URL", "sqlite:///rel.sqlite3")
    assert load_settings(config).database_url == "sqlite:///rel.sqlite3"


def test_a_leading_tilde_is_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``data_dir = "~/bdx"`` in a config file made a folder named ``~`` beside the file."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    config = tmp_path / "etc" / "node.toml"
    config.parent.mkdir()
    config.write_text(
        'data_dir = "~/state"\npolicy_file = "~/rules.toml"\n'
        'database_url = "sqlite:///~/db/node.sqlite3"\npki_dir = "a~b"\n'
    )
    monkeypatch.chdir(tmp_path)
    s = load_settings(config)
    assert (s.data_dir, s.policy_file) == (home / "state", home / "rules.toml")
    assert s.gallery_dir == home / "state" / "gallery"
    assert s.sqlite_path == home / "db" / "node.sqlite3"
    assert s.pki_dir == config.parent / "a~b"  # only a leading ~ is the home folder
    monkeypatch.setenv("BDX_DATA_DIR", "~/from-env")
    monkeypatch.setenv("BDX_HIT_SECRET_FILE", "~/hit.key")
    s = load_settings(config)
    assert (s.data_dir, s.hit_secret_file) == (home / "from-env", home / "hit.key")
    assert s.sqlite_path == home / "db" / "node.sqlite3"
    monkeypatch.delenv("BDX_DATA_DIR")
    monkeypatch.setenv("BDX_DATABASE_URL", "sqlite:///~/env.sqlite3")
    assert load_settings(config).sqlite_path == home / "env.sqlite3"


def test_only_a_leading_tilde_in_the_text_is_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``./~/bdx`` names a folder called ``~``: a path type had already turned it into
    ``~/bdx`` when it was looked at, so it went to the home folder too."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    config = tmp_path / "etc" / "node.toml"
    config.parent.mkdir()
    config.write_text('data_dir = "./~/state"\npolicy_file = "./~/rules.toml"\n')
    monkeypatch.chdir(tmp_path)
    s = load_settings(config)
    assert (s.data_dir, s.policy_file) == (
        config.parent / "~/state",
        config.parent / "~/rules.toml",
    )
    monkeypatch.setenv("BDX_DATA_DIR", "./~/env")
    monkeypatch.setenv("BDX_DATABASE_URL", "sqlite:///./~/env.sqlite3")
    s = load_settings(config)
    assert not s.data_dir.is_absolute() and s.data_dir.parts[0] == "~"
    assert s.sqlite_path is not None and not s.sqlite_path.is_absolute()


def test_state_in_a_folder_named_tilde_beside_the_config_is_refused_not_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``data_dir = "~/bdx"`` used to be a folder named ``~`` beside the file; read as the home
    folder, an upgraded node started afresh with an empty database, silently."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    config = tmp_path / "etc" / "node.toml"
    (config.parent / "~" / "bdx").mkdir(parents=True)
    config.write_text('data_dir = "~/bdx"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert info.value.reason == "moved_state"
    assert str(config.parent / "~" / "bdx") in info.value.message
    assert str(home / "bdx") in info.value.message and "'./~/bdx'" in info.value.message
    config.write_text('data_dir = "./~/bdx"\n')  # the way out the message gives
    assert load_settings(config).data_dir == config.parent / "~" / "bdx"
    config.write_text('data_dir = "~/bdx"\n')
    (home / "bdx").mkdir(parents=True)  # or the state moved home: both exist, home wins
    assert load_settings(config).data_dir == home / "bdx"


def test_the_config_files_own_path_may_start_with_tilde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "node.toml").write_text('country = "XA"\n')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("BDX_CONFIG", "~/node.toml")
    assert load_settings().country == "XA"
    monkeypatch.setenv("BDX_CONFIG", "~no-such-user-bdx/node.toml")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.reason == "config_not_found" and "home folder" in info.value.message


@pytest.mark.parametrize("source", ["config", "environment"])
def test_an_unknown_home_folder_is_refused_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    config = tmp_path / "node.toml"
    if source == "config":
        config.write_text('data_dir = "~no-such-user-bdx/state"\n')
    else:
        config.write_text('country = "XA"\n')
        monkeypatch.setenv("BDX_DATA_DIR", "~no-such-user-bdx/state")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert info.value.reason == "bad_config"
    assert "data_dir" in info.value.message and "home folder" in info.value.message
    assert "\n" not in info.value.message


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "absent.toml")
    assert info.value.reason == "config_not_found"


@pytest.mark.parametrize("name", ["node.toml", "node.env"])
def test_a_config_file_that_is_a_fifo_device_or_too_large_is_one_line(
    tmp_path: Path, name: str
) -> None:
    """A FIFO or device was said "not found"; a config file was read whole however large,
    and one that is not UTF-8 was named with the byte the decoder choked on."""
    fifo = tmp_path / name
    with fifo_released_after(fifo) as took, pytest.raises(ConfigError) as info:
        load_settings(fifo)
    assert took[0] < FIFO_WAIT_S and info.value.reason == "bad_config"
    assert info.value.message == f"cannot read config file {fifo}: not a regular file"
    with pytest.raises(ConfigError) as info:
        load_settings(Path("/dev/zero"))
    assert info.value.message == "cannot read config file /dev/zero: not a regular file"
    big = tmp_path / f"big-{name}"
    big.write_bytes(b"#" * MAX_CONFIG_FILE_BYTES + b"\n")
    with pytest.raises(ConfigError) as info:
        load_settings(big)
    assert (info.value.reason, info.value.exit_code) == ("file_too_large", 2)
    latin = tmp_path / f"latin-{name}"
    latin.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_settings(latin)
    assert info.value.message == f"cannot read config file {latin}: not UTF-8 text"


def test_malformed_toml(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("country = \n")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert info.value.reason == "bad_config"
    assert "cannot read config file" in info.value.message


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "typo.toml"
    config.write_text('contry = "DE"\n')
    with pytest.raises(ConfigError, match="contry") as info:
        load_settings(config)
    assert info.value.reason == "bad_config"


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("country", "Germany", "country"),
        ("country", "QA1", "country"),
        ("port", 70000, "port"),
        ("search_fmr", 0, "search_fmr"),
        ("worker_threads", 0, "worker_threads"),
        ("peer_threads", 0, "peer_threads"),
        ("search_processes", -1, "search_processes"),
        ("search_processes", 65, "search_processes"),
        ("environment", "staging", "environment"),
        ("checkpoint_interval_s", 1e-6, "checkpoint_interval_s"),
        ("checkpoint_interval_s", float("inf"), "checkpoint_interval_s"),
        ("checkpoint_interval_s", float("nan"), "checkpoint_interval_s"),
        ("checkpoint_interval_s", 86401, "checkpoint_interval_s"),
        ("gallery_erase_interval_s", 1e-6, "gallery_erase_interval_s"),
        ("gallery_erase_interval_s", float("nan"), "gallery_erase_interval_s"),
        ("peer_timeout_s", 1e-300, "peer_timeout_s"),
        ("search_fpir", float("nan"), "search_fpir"),
        ("max_upload_bytes", 10**15, "max_upload_bytes"),
        ("max_json_bytes", 10**14, "max_json_bytes"),
    ],
)
def test_invalid_values(field: str, value: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        load_settings(**{field: value})
    assert info.value.reason == "bad_config"


def test_exchange_log_retention_outlives_the_hit_follow_up(tmp_path: Path) -> None:
    """A resolved hit's log entries must be kept for its whole follow-up period."""
    assert load_settings(data_dir=tmp_path).exchange_log_days == 730
    with pytest.raises(ConfigError, match=r"exchange_log_days .*hit_reference_days") as info:
        load_settings(data_dir=tmp_path, exchange_log_days=365)
    assert info.value.reason == "bad_config"
    with pytest.raises(ConfigError, match=r"exchange_log_days .*hit_reference_days") as info:
        load_settings(data_dir=tmp_path, hit_reference_days=1000, exchange_log_days=800)
    # Not set, it follows a follow-up period longer than its default (an upgraded node).
    assert load_settings(data_dir=tmp_path, hit_reference_days=1000).exchange_log_days == 1000
    with pytest.raises(ConfigError, match="exchange_log_days"):  # under a year
        load_settings(data_dir=tmp_path, hit_reference_days=1, exchange_log_days=1)
    kept = load_settings(data_dir=tmp_path, hit_reference_days=1000, exchange_log_days=1000)
    assert kept.exchange_log_days == 1000
    assert load_settings(data_dir=tmp_path, exchange_log_days=36500).exchange_log_days == 36500
    with pytest.raises(ConfigError, match="exchange_log_days"):
        load_settings(data_dir=tmp_path, exchange_log_days=36501)


def test_development_allows_unsafe_values(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path, debug=True, cors_origins=["*"], country="XX")
    assert s.unsafe_reasons() == []


def test_production_refuses_missing_tls(safe: dict[str, Any]) -> None:
    msg = refusal(**{**safe, "tls_cert_file": None, "tls_key_file": None})
    assert "tls_cert_file and tls_key_file are required" in msg


def test_production_refuses_absent_tls_file(safe: dict[str, Any], tmp_path: Path) -> None:
    msg = refusal(**{**safe, "tls_cert_file": tmp_path / "nope.crt"})
    assert "nope.crt does not exist" in msg


def test_production_refuses_readable_tls_key(safe: dict[str, Any]) -> None:
    key = safe["tls_key_file"]
    assert isinstance(key, Path)
    key.chmod(0o644)
    assert "readable by other users" in refusal(**safe)


def test_production_refuses_debug(safe: dict[str, Any]) -> None:
    assert "debug must be off" in refusal(**safe, debug=True)


def test_production_refuses_wildcard_cors(safe: dict[str, Any]) -> None:
    assert "not '*'" in refusal(**safe, cors_origins=["https://ok.example", "*"])


def test_production_refuses_private_use_country(safe: dict[str, Any]) -> None:
    assert "private-use code" in refusal(**{**safe, "country": "XX"})


def test_production_refuses_shared_database_file(safe: dict[str, Any]) -> None:
    data = safe["data_dir"]
    assert isinstance(data, Path)
    db = data / "bdx.sqlite3"
    db.write_bytes(b"")
    db.chmod(0o644)
    assert "accessible to other users" in refusal(**safe)


def test_production_refuses_world_writable_data_dir(safe: dict[str, Any]) -> None:
    data = safe["data_dir"]
    assert isinstance(data, Path)
    data.chmod(0o777)
    assert "writable by other users" in refusal(**safe)


def test_production_refuses_an_open_gallery_dir(safe: dict[str, Any]) -> None:
    gallery = safe["data_dir"] / "gallery"
    gallery.mkdir(mode=0o750)
    gallery.chmod(0o750)  # a service group may read it
    assert load_settings(**safe).unsafe_reasons() == []
    gallery.chmod(0o777)
    assert "gallery_dir" in refusal(**safe)


@pytest.mark.parametrize("name", ["pki_passphrase_file", "hit_secret_file"])
def test_production_refuses_readable_secrets(safe: dict[str, Any], name: str) -> None:
    secret = safe["data_dir"] / f"{name}.txt"
    secret.write_text("secret")
    secret.chmod(0o600)
    assert load_settings(**safe, **{name: secret}).unsafe_reasons() == []
    secret.chmod(0o644)
    assert f"{name} {secret} is readable by other users" in refusal(**safe, **{name: secret})


def test_production_refuses_plain_http_peers(safe: dict[str, Any]) -> None:
    msg = refusal(**safe, peers={"FR": "http://fr.example:8444", "ID": "https://id.example"})
    assert "peer URLs must be https:// (FR)" in msg


def test_token_lifetime_is_bounded(tmp_path: Path) -> None:
    """100,000,000 days overflowed the expiry date (a traceback, or a 500 on token issue)."""
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path, token_max_days=100_000_000)
    assert info.value.reason == "bad_config"


def test_every_refusal_is_listed_at_once(safe: dict[str, Any]) -> None:
    msg = refusal(**{**safe, "debug": True, "cors_origins": ["*"], "country": "ZZ"})
    assert msg.count(";") == 2


def test_check_can_be_deferred(safe: dict[str, Any]) -> None:
    s = load_settings(**safe, debug=True, check=False)
    assert isinstance(s, Settings)
    with pytest.raises(ConfigError):
        s.check_safe()


def test_every_setting_says_what_it_is() -> None:
    """The README sends operators to the fields of node/settings.py for their meaning."""
    from node.settings import Settings

    assert [n for n, f in Settings.model_fields.items() if not f.description] == []


def test_a_command_run_elsewhere_uses_the_config_files_folder(tmp_path: Path) -> None:
    """``bdx db upgrade --config etc/node.toml`` from another folder creates the database
    beside the config file, where ``bdx serve`` with the same file will look for it."""
    config = tmp_path / "etc" / "node.toml"
    config.parent.mkdir()
    config.write_text('country = "XB"\ndata_dir = "state"\n')
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BDX_")}
    bdx = [sys.executable, "-c", "from node.cli import main; main()"]
    done = subprocess.run(
        [*bdx, "db", "upgrade", "--config", str(config)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "etc" / "state" / "bdx.sqlite3").is_file()
    assert not (elsewhere / "state").exists()
