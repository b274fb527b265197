from pathlib import Path

import pytest

from policy.rules import Modality, PolicyFileError, Purpose, load_policy, parse_policy
from tests.policy_rules.rules_example import RULES


def test_example_parses() -> None:
    p = parse_policy(RULES)
    assert p.country == "TH" and p.version == "2026-11-01.1"
    assert p.peers["ID"].purposes == {Purpose.BORDER_CONTROL, Purpose.LAW_ENFORCEMENT}
    assert p.max_candidates("ID") == 5 and p.max_candidates("MY") == 10
    assert p.fmr("ID", Modality.FINGERPRINT) == 1e-5
    assert p.fmr("ID", Modality.FACE) == 1e-3
    assert p.fmr("MY", Modality.FINGERPRINT) == 1e-4


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("version = 1\ncountry = 'TH'", "version"),
        ("version = 'x'\ncountry = 'Thailand'", "country"),
        (
            "version = 'x'\ncountry = 'TH'\n[peers.ID]\npurposes = ['spying']\n"
            "modalities = ['face']\ndaily_quota = {face = 1}",
            "purposes",
        ),
        (
            "version = 'x'\ncountry = 'TH'\n[peers.ID]\npurposes = ['asylum']\n"
            "modalities = ['face']\ndaily_quota = {}",
            "daily_quota missing",
        ),
        (
            "version = 'x'\ncountry = 'TH'\n[peers.ID]\npurposes = ['asylum']\n"
            "modalities = ['face']\ndaily_quota = {face = -1}",
            "daily_quota",
        ),
        (
            "version = 'x'\ncountry = 'TH'\n[peers.ID]\npurposes = ['asylum']\n"
            "modalities = ['face']\ndaily_quota = {face = 1}\nhours = ['25:00-26:00']",
            "hours",
        ),
        (
            "version = 'x'\ncountry = 'TH'\n[peers.ID]\npurposes = ['asylum']\n"
            "modalities = ['face']\ndaily_quota = {face = 1}\ntimezone = 'Mars/Olympus'",
            "time zone",
        ),
        (
            "version = 'x'\ncountry = 'TH'\n[peers.TH]\npurposes = ['asylum']\n"
            "modalities = ['face']\ndaily_quota = {face = 1}",
            "own country",
        ),
        ("version = 'x'\ncountry = 'TH'\nunknown_key = 1", "unknown_key"),
        ("version = 'x'\ncountry = 'TH'\n[defaults]\nfmr = {face = 2.0}", "fmr"),
        ("this is = = not toml", "not valid TOML"),
    ],
)
def test_invalid_files_are_refused_with_location(text: str, fragment: str) -> None:
    with pytest.raises(PolicyFileError) as info:
        parse_policy(text)
    joined = str(info.value) + " ".join(info.value.problems)
    assert fragment in joined


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")


def test_window_wrapping_midnight() -> None:
    p = parse_policy(
        "version = 'x'\ncountry = 'TH'\n[peers.ID]\npurposes = ['asylum']\n"
        "modalities = ['face']\ndaily_quota = {face = 1}\nhours = ['22:00-06:00']"
    )
    from datetime import time

    (w,) = p.peers["ID"].hours
    assert w.contains(time(23, 0)) and w.contains(time(5, 59)) and not w.contains(time(12, 0))
