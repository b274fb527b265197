"""The rules file re-read in housekeeping: each way a change is applied or refused."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from node.exchange.rules_reload import MAX_RULES_BYTES, RulesFile
from policy.decision import PolicyEngine
from policy.quota import QuotaLedger, quota_usage
from policy.rules import load_policy
from tests.fifo_support import FIFO_WAIT_S, fifo_released_after

RULES = """version = "r-1"
country = "ID"
[peers.TH]
purposes = ["border_control"]
modalities = ["fingerprint"]
daily_quota = { fingerprint = 10 }
"""


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, PolicyEngine, RulesFile, list[dict[str, Any]]]:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    engine = create_engine(f"sqlite:///{tmp_path / 'q.db'}")
    quota_usage.metadata.create_all(engine)
    policy = PolicyEngine(load_policy(path), QuotaLedger(engine))
    events: list[dict[str, Any]] = []
    return path, policy, RulesFile(path, policy, events.append, "ID"), events


def _rewrite(path: Path, text: str) -> None:
    """Write ``text`` and move the modification time on (coarse clocks keep it otherwise)."""
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_an_unchanged_or_only_touched_file_is_left_alone(setup: Any) -> None:
    path, policy, rules, events = setup
    kept = policy.policy
    assert rules.check() is False
    _rewrite(path, RULES)  # same bytes, new time
    assert rules.check() is False and policy.policy is kept and events == []


def test_a_valid_change_comes_into_force_and_is_logged(setup: Any) -> None:
    path, policy, rules, events = setup
    _rewrite(path, RULES.replace("r-1", "r-2").replace("= 10", "= 3"))
    assert rules.check() is True
    assert policy.policy.version == "r-2" and policy.policy.peers["TH"].daily_quota
    (event,) = events
    assert event["type"] == "policy_loaded" and event["node"] == "ID"
    assert (event["policy_version_before"], event["policy_version"]) == ("r-1", "r-2")
    assert len(event["sha256"]) == 64


def test_a_change_that_keeps_its_version_is_applied_with_a_warning(
    setup: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path, policy, rules, events = setup
    _rewrite(path, RULES.replace("= 10", "= 3"))
    with caplog.at_level(logging.WARNING):
        assert rules.check() is True
    assert "kept its version 'r-1'" in caplog.text and len(events) == 1
    assert policy.policy.peers["TH"].daily_quota["fingerprint"] == 3


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (RULES + "bogus = 1\n", "bogus"),
        (RULES.replace('country = "ID"', 'country = "MY"'), "holds MY's rules"),
        ("version = = broken", "not valid TOML"),
        (RULES + "#" * MAX_RULES_BYTES, f"larger than {MAX_RULES_BYTES} bytes"),
    ],
)
def test_a_bad_file_is_refused_once_and_the_rules_in_force_stay(
    setup: Any, caplog: pytest.LogCaptureFixture, text: str, why: str
) -> None:
    path, policy, rules, events = setup
    kept = policy.policy
    _rewrite(path, text)
    assert rules.check() is False and rules.check() is False
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(said) == 1 and why in said[0] and "version r-1 stay in force" in said[0]
    assert policy.policy is kept and events == []
    _rewrite(path, RULES.replace("r-1", "r-3"))  # fixed: applied
    assert rules.check() is True and policy.policy.version == "r-3"


def test_a_missing_file_is_said_once(setup: Any, caplog: pytest.LogCaptureFixture) -> None:
    path, policy, rules, _ = setup
    path.unlink()
    assert rules.check() is False and rules.check() is False
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(said) == 1 and "cannot read" in said[0]
    assert policy.policy.version == "r-1"


def test_production_refuses_a_file_others_can_write(
    setup: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The start-up check refuses it; a reload took such an edit within a minute."""
    path, policy, _, events = setup
    rules = RulesFile(path, policy, events.append, "ID", production=True)
    _rewrite(path, RULES.replace("r-1", "r-9").replace("= 10", "= 1000000"))
    path.chmod(0o666)
    assert rules.check() is False and rules.check() is False
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(said) == 1 and "writable by other users" in said[0]
    assert policy.policy.version == "r-1" and events == []
    path.chmod(0o644)
    assert rules.check() is True and policy.policy.version == "r-9"


def test_a_rules_file_replaced_by_a_fifo_is_refused_at_once(
    setup: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path, policy, rules, events = setup
    kept = policy.policy
    path.unlink()
    with fifo_released_after(path) as took, caplog.at_level(logging.WARNING):
        assert rules.check() is False  # was: the node's housekeeping waited for a writer
    assert took[0] < FIFO_WAIT_S
    assert "not a regular file" in caplog.text and policy.policy is kept and events == []
