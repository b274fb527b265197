import json
import os
import subprocess
import sys
from pathlib import Path

from policy.diff import diff_policies
from policy.rules import parse_policy
from tests.policy_rules.rules_example import RULES

NEW = (
    RULES.replace('version = "2026-11-01.1"', 'version = "2026-12-01.1"')
    .replace('purposes = ["border_control", "law_enforcement"]', 'purposes = ["border_control"]')
    .replace(
        "daily_quota = { fingerprint = 3, face = 2 }", "daily_quota = { fingerprint = 9, face = 2 }"
    )
    .replace(
        '[outbound.ID]\npurposes = ["border_control"]',
        '[outbound.ID]\npurposes = ["border_control", "asylum"]',
    )
)


def test_diff_lists_widening_and_narrowing() -> None:
    changes = {str(c) for c in diff_policies(parse_policy(RULES), parse_policy(NEW))}
    assert "- inbound ID: law_enforcement/fingerprint: allowed -> refused" in changes
    assert "- inbound ID: law_enforcement/face: allowed -> refused" in changes
    assert "+ inbound ID: daily quota fingerprint: 3 -> 9" in changes
    assert "+ outbound ID: asylum/fingerprint: refused -> allowed" in changes
    assert "~ policy: version: 2026-11-01.1 -> 2026-12-01.1" in changes
    assert diff_policies(parse_policy(RULES), parse_policy(RULES)) == []


def test_diff_classifies_hours_of_service_by_the_time_covered() -> None:
    base = (
        "version = 'x'\ncountry = 'TH'\n[peers.ID]\npurposes = ['asylum']\n"
        "modalities = ['face']\ndaily_quota = {face = 1}\n"
    )

    def effect(old: str, new: str) -> str:
        (change,) = diff_policies(parse_policy(base + old), parse_policy(base + new))
        return str(change)[0]

    assert effect("", "hours = ['09:00-10:00']") == "-"  # always -> one hour a day
    assert effect("hours = ['09:00-10:00']", "") == "+"
    assert effect("hours = ['09:00-17:00']", "hours = ['08:00-18:00']") == "+"
    assert effect("hours = ['22:00-06:00']", "hours = ['23:00-05:00']") == "-"
    assert effect("hours = ['09:00-17:00']", "hours = ['10:00-18:00']") == "~"  # a shift
    assert effect("", "timezone = 'Asia/Bangkok'") == "~"  # always, in any zone
    assert (
        effect("hours = ['09:00-17:00']", "hours = ['09:00-17:00']\ntimezone = 'Asia/Bangkok'")
        == "~"
    )


def _bdx(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``bdx ARGS``; with ``env``, BDX_POLICY_FILE and BDX_POLICY are only as it sets them."""
    environ = None
    if env is not None:
        environ = {
            k: v for k, v in os.environ.items() if k not in ("BDX_POLICY_FILE", "BDX_POLICY")
        }
        environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", "from node.cli import main; main()", *args],
        capture_output=True,
        text=True,
        check=False,
        env=environ,
    )


def test_cli_reads_the_rules_file_the_node_reads(tmp_path: Path) -> None:
    """`bdx policy` read $BDX_POLICY while the node reads $BDX_POLICY_FILE: a node's own
    environment gave `bdx policy validate` no rules file (exit 2). BDX_POLICY_FILE now, then
    BDX_POLICY as before."""
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(RULES)
    bad.write_text("version = 'x'\ncountry = 'Thailand'\n")
    for env, code in (
        ({"BDX_POLICY_FILE": str(good)}, 0),
        ({"BDX_POLICY": str(good)}, 0),
        ({"BDX_POLICY_FILE": str(good), "BDX_POLICY": str(bad)}, 0),
        ({"BDX_POLICY_FILE": str(bad), "BDX_POLICY": str(good)}, 3),
    ):
        res = _bdx("policy", "validate", "--json", env=env)
        assert res.returncode == code, (env, res.stderr)
        assert json.loads(res.stdout)["valid"] is (code == 0)


def test_cli_without_a_rules_file_names_its_variables_plainly() -> None:
    """Without -r nor its variables, click's message showed a Python list:
    ``(env var: '['BDX_POLICY_FILE', 'BDX_POLICY']')``."""
    res = _bdx("policy", "validate", env={})
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [
        "bdx: error: Missing option '--rules' / '-r' (env var: 'BDX_POLICY_FILE' or "
        "'BDX_POLICY'). (see 'bdx policy validate -h') [usage]"
    ]


def test_cli_check_explains(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    ok = _bdx(
        "policy",
        "check",
        "--rules",
        str(rules),
        "--from",
        "ID",
        "--purpose",
        "border_control",
        "--modality",
        "fingerprint",
    )
    assert ok.returncode == 0, ok.stderr
    assert "ALLOWED" in ok.stdout and "pass purpose" in ok.stdout
    no = _bdx(
        "policy",
        "check",
        "--rules",
        str(rules),
        "--from",
        "ID",
        "--purpose",
        "asylum",
        "--modality",
        "fingerprint",
        "--json",
    )
    assert no.returncode == 5
    assert json.loads(no.stdout)["refusal"] == "purpose_not_allowed"


def test_cli_check_refuses_a_zero_quota_as_the_node_does(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.replace("fingerprint = 3, face = 2", "fingerprint = 0, face = 2"))
    args = ("policy", "check", "--rules", str(rules), "--from", "ID", "--purpose")
    got = _bdx(*args, "border_control", "--modality", "fingerprint")
    assert got.returncode == 5, got.stdout
    assert "REFUSED (quota_exhausted)" in got.stdout and "daily quota of 0" in got.stdout


def test_cli_diff_and_errors(tmp_path: Path) -> None:
    old, new = tmp_path / "old.toml", tmp_path / "new.toml"
    old.write_text(RULES)
    new.write_text(NEW)
    out = _bdx("policy", "diff", str(old), str(new))
    assert out.returncode == 0 and "- inbound ID: law_enforcement/face" in out.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("version = 'x'\ncountry = 'Thailand'\n")
    bad.write_text("version = 'x'\ncountry = 'Thailand'\nextra = 1\n")
    res = _bdx("policy", "validate", "--rules", str(bad))
    assert res.returncode == 3 and "Traceback" not in res.stderr
    lines = res.stderr.splitlines()  # every problem with its location, then the error line
    assert len(lines) == 3 and lines[-1].startswith("bdx: error:")
    assert ": country: " in lines[0] and ": extra: " in lines[1]
    res = _bdx("policy", "validate", "--rules", str(bad), "--json")
    assert res.returncode == 3
    doc = json.loads(res.stdout)
    assert doc["valid"] is False and len(doc["problems"]) == 2
    res = _bdx("policy", "validate", "--rules", str(tmp_path / "absent.toml"))
    assert res.returncode == 4 and "[policy_not_found]" in res.stderr  # not found
    res = _bdx("policy", "check", "--rules", str(old), "--purpose", "asylum", "--modality", "face")
    assert res.returncode == 2


def test_cli_check_refuses_an_unknown_modality_as_a_usage_error(tmp_path: Path) -> None:
    """--modality iris was evaluated and REFUSED, exit 5, as if the rules had refused it."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    args = ("policy", "check", "--rules", str(rules), "--from", "ID", "--purpose")
    got = _bdx(*args, "border_control", "--modality", "iris")
    assert got.returncode == 2 and "--modality" in got.stderr and got.stdout == "", got.stdout
    face = _bdx(*args, "border_control", "--modality", "face")
    assert face.returncode == 0 and "inbound ID border_control/face: ALLOWED" in face.stdout
