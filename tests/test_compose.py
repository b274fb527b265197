"""``docker-compose.yml`` checked without Docker: a strict parser of the YAML subset the file
uses (block mappings, block sequences, plain and quoted scalars, comments; no anchors or flow
collections), then services, dependencies, settings variables, commands, ports and volumes."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from node.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
BDX = [sys.executable, "-c", "from node.cli import main; main()"]
NODES = {"node-th": "TH", "node-id": "ID", "node-my": "MY"}

_LINE = re.compile(r"^(?P<indent> *)(?P<body>.*?)\s*$")
_KEY = re.compile(r"^(?P<key>[A-Za-z0-9_.-]+):(?: (?P<value>.*))?$")


class ParseError(ValueError):
    pass


def _scalar(text: str, lineno: int) -> str:
    if text[:1] in "&*[{|>!":
        raise ParseError(f"line {lineno}: unsupported YAML construct {text[:10]!r}")
    if text.startswith('"'):
        if not text.endswith('"') or len(text) < 2:
            raise ParseError(f"line {lineno}: unterminated string")
        value: str = json.loads(text)
        return value
    if text.startswith("'"):
        if not text.endswith("'") or len(text) < 2:
            raise ParseError(f"line {lineno}: unterminated string")
        return text[1:-1].replace("''", "'")
    if " #" in text:
        text = text.split(" #", 1)[0].rstrip()
    return text


def _lines(text: str) -> list[tuple[int, int, str]]:
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw:
            raise ParseError(f"line {n}: tab")
        m = _LINE.match(raw)
        assert m is not None
        body = m["body"]
        if not body or body.startswith("#"):
            continue
        out.append((n, len(m["indent"]), body))
    return out


def _block(lines: list[tuple[int, int, str]], i: int, indent: int) -> tuple[Any, int]:
    n, ind, body = lines[i]
    if ind != indent:
        raise ParseError(f"line {n}: expected indent {indent}, got {ind}")
    if body.startswith("- ") or body == "-":
        items: list[Any] = []
        while i < len(lines) and lines[i][1] == indent and lines[i][2].startswith("- "):
            items.append(_scalar(lines[i][2][2:].strip(), lines[i][0]))
            i += 1
        return items, i
    mapping: dict[str, Any] = {}
    while i < len(lines) and lines[i][1] == indent:
        n, _, body = lines[i]
        m = _KEY.match(body)
        if m is None:
            raise ParseError(f"line {n}: expected 'key: value', got {body!r}")
        key = m["key"]
        if key in mapping:
            raise ParseError(f"line {n}: duplicate key {key!r}")
        if m["value"]:
            mapping[key] = _scalar(m["value"].strip(), n)
            i += 1
        elif i + 1 < len(lines) and lines[i + 1][1] > indent:
            mapping[key], i = _block(lines, i + 1, lines[i + 1][1])
        elif i + 1 < len(lines) and lines[i + 1][1] == indent and lines[i + 1][2][:2] == "- ":
            mapping[key], i = _block(lines, i + 1, indent)
        else:
            mapping[key] = None
            i += 1
    if i < len(lines) and lines[i][1] > indent:
        raise ParseError(f"line {lines[i][0]}: unexpected indent")
    return mapping, i


def parse(text: str) -> dict[str, Any]:
    lines = _lines(text)
    doc, end = _block(lines, 0, 0)
    if end != len(lines) or not isinstance(doc, dict):
        raise ParseError("trailing content")
    return doc


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return parse(COMPOSE.read_text())


def test_parser_reads_the_subset_and_rejects_the_rest() -> None:
    assert parse("a:\n  b: 'x'\n  c:\n    - \"y\"\n    - z # note\nd:\n") == {
        "a": {"b": "x", "c": ["y", "z"]},
        "d": None,
    }
    for bad in ("a: &x 1\n", "a: [1, 2]\n", "a: 1\na: 2\n", "a:\n\tb: 1\n", "a: 1\n  b: 2\n"):
        with pytest.raises(ParseError):
            parse(bad)


def test_services_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "databases", "pki", *NODES}
    assert services["postgres"]["healthcheck"]["test"][0] == "CMD-SHELL"
    assert services["databases"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for one_shot in ("pki", "databases"):
        assert services[one_shot]["restart"] == "no"
    for name in NODES:
        assert services[name]["depends_on"] == {
            "pki": {"condition": "service_completed_successfully"},
            "databases": {"condition": "service_completed_successfully"},
        }
        assert services[name]["healthcheck"]["test"][0] == "CMD"
        assert services[name]["build"] == {"context": "."}


def test_every_variable_is_a_setting_and_the_settings_load(compose: dict[str, Any]) -> None:
    fields = {f"BDX_{name.upper()}" for name in Settings.model_fields}
    for name, country in NODES.items():
        env = compose["services"][name]["environment"]
        assert set(env) <= fields, set(env) - fields
        assert env["BDX_COUNTRY"] == country
        cc = country.lower()
        assert env["BDX_TLS_CERT_FILE"] == f"/pki/nodes/{cc}/tls.pem"
        assert env["BDX_POLICY_FILE"] == f"/pki/rules/{cc}.toml"
        assert env["BDX_DATABASE_URL"].endswith(f"/bdx_{cc}")
        peers = json.loads(env["BDX_PEERS"])
        assert peers == {
            c: f"https://{n}:{env['BDX_PEER_PORT']}" for n, c in NODES.items() if c != country
        }
        overrides = {k.removeprefix("BDX_").lower(): v for k, v in env.items()}
        overrides["peers"] = peers
        settings = Settings(**overrides)  # types and ranges as the node reads them
        assert settings.exchange_enabled


def _bdx_commands(compose: dict[str, Any]) -> list[list[str]]:
    commands = []
    for service in compose["services"].values():
        if service.get("image") != "bdx:latest":
            continue
        entry = service["entrypoint"]
        assert entry[:2] == ["sh", "-c"]
        for part in entry[2].split("&&"):
            words = shlex.split(part)
            if words[0] == "exec":
                words = words[1:]
            if words[0] == "bdx":
                commands.append(words[1:])
            else:
                assert words[:3] == ["python", "-m", "node.demo.rules"], words
    return commands


def test_commands_are_real_bdx_commands(compose: dict[str, Any]) -> None:
    commands = _bdx_commands(compose)
    assert ["pki", "bootstrap", "--countries", "TH,ID,MY", "--out", "/pki", "--exist-ok"] in (
        commands
    )
    for words in {tuple(c[:2]) if c[0] != "serve" else ("serve",) for c in commands}:
        done = subprocess.run([*BDX, *words, "--help"], capture_output=True, check=False)
        assert done.returncode == 0, words


def test_ports_and_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    published = []
    for name in NODES:
        env = services[name]["environment"]
        (port,) = services[name]["ports"]
        host, container = port.split(":")
        assert container == env["BDX_PORT"]
        published.append(host)
        assert "pki:/pki:ro" in services[name]["volumes"]
        assert f"data-{name.removeprefix('node-')}:/data" in services[name]["volumes"]
        assert env["BDX_DATA_DIR"] == "/data"
    assert len(set(published)) == len(published)
    assert services["pki"]["volumes"] == ["pki:/pki"]
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert used == set(compose["volumes"])


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_accepts_the_file() -> None:
    done = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_the_rules_writer_has_a_proper_command_line(tmp_path: Path) -> None:
    """``python -m node.demo.rules`` (README, the compose file) read sys.argv by hand:
    ``--help`` made a folder named ``--help``, a wrong count of arguments exited 1."""
    rules = [sys.executable, "-m", "node.demo.rules"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([*rules, "--help"], cwd=tmp_path, env=env, capture_output=True)
    assert done.returncode == 0 and b"Usage:" in done.stdout, done.stderr
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "a-file").touch()
    for args in ([], ["one", "two"], ["--bogus", "x"], ["a-file"]):
        done = subprocess.run([*rules, *args], cwd=tmp_path, env=env, capture_output=True)
        assert done.returncode == 2, (args, done.stderr)
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]
    done = subprocess.run([*rules, "out"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["id.toml", "my.toml", "th.toml"]
