from pathlib import Path

import pytest

from policy.rules import (
    MAX_RULES_FILE_BYTES,
    Modality,
    PolicyFileError,
    Purpose,
    load_policy,
    parse_policy,
)
from tests.fifo_support import FIFO_WAIT_S, fifo_released_after
from tests.policy_rules.rules_example import RULES


def test_example_parses() -> None:
    p = parse_policy(RULES)
    assert p.country == "TH" and p.version == "2026-11-01.1"
    assert p.peers["ID"].purposes == {Purpose.BORDER_CONTROL, Purpose.LAW_ENFORCEMENT}
    assert p.max_candidates("ID") == 5 and p.max_candidates("MY") == 10
    assert p.fmr("ID", Modality.FINGERPRINT) == 1e-5
    assert p.fmr("ID", Modality.FACE) == 1e-3
    assert p.fmr("MY", Modality.FINGERPRINT) == 1e-4


_PEER = (
    "version = 'x'\ncountry = 'TH'\n[peers.ID]\npurposes = ['asylum']\n"
    "modalities = ['face']\ndaily_quota = {face = 1}\n"
)


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
        (_PEER + "timezone = 'localtime'", "depends on the host"),
        # a folder of the zone database, not a zone: an OSError escaped the validation
        (_PEER + "timezone = 'America'", "unknown time zone"),
        # the table form of a window: empty, or a key it does not have (the zone belongs to
        # the peer rule; it was dropped silently and the window applied in UTC)
        (_PEER + "hours = [{start = '09:00', end = '09:00'}]", "empty window"),
        (
            _PEER + "hours = [{start = '09:00', end = '17:00', timezone = 'Asia/Bangkok'}]",
            "timezone",
        ),
        ("version = 'x'\ncountry = 'TH'\n[defaults]\nmax_candidates = 5.0", "max_candidates"),
        (_PEER.replace("face = 1", "face = true"), "daily_quota"),
        (_PEER.replace("face = 1", "face = 2147483648"), "less than or equal to 2147483647"),
        ("version = 'x'\ncountry = 'TH'\n[defaults]\nfmr = {face = 2.0}", "fmr"),
        ("this is = = not toml", "not valid TOML"),
        # shaped like a code, assigned to no country: such a rule would never apply
        (_PEER.replace("[peers.ID]", "[peers.UK]"), "'UK' is not an ISO 3166-1"),
        (
            "version = 'x'\ncountry = 'TH'\n[outbound.EU]\npurposes = ['asylum']\n"
            "modalities = ['face']",
            "'EU' is not an ISO 3166-1",
        ),
        ("version = 'x'\ncountry = 'UK'", "country"),
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


def test_a_rules_file_that_is_a_fifo_device_or_too_large_is_refused_at_once(
    tmp_path: Path,
) -> None:
    """load_policy read the rules file whole: a FIFO hung bdx serve and bdx policy forever,
    /dev/zero was read without end, and a file not UTF-8 was named with its byte."""
    fifo = tmp_path / "rules.toml"
    with fifo_released_after(fifo) as took, pytest.raises(PolicyFileError) as info:
        load_policy(fifo)
    assert took[0] < FIFO_WAIT_S
    assert (info.value.reason, str(info.value)) == (
        "invalid_policy",
        f"{fifo}: cannot read (not a regular file)",
    )
    with pytest.raises(PolicyFileError, match="not a regular file"):
        load_policy("/dev/zero")
    big = tmp_path / "big.toml"
    big.write_text(RULES + "#" * MAX_RULES_FILE_BYTES)
    with pytest.raises(PolicyFileError) as info:
        load_policy(big)
    assert (info.value.reason, info.value.exit_code) == ("file_too_large", 3)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(RULES.encode() + b"# caf\xe9\n")
    with pytest.raises(PolicyFileError) as info:
        load_policy(latin)
    assert str(info.value) == f"{latin}: cannot read (not UTF-8 text)"


def test_window_wrapping_midnight() -> None:
    p = parse_policy(
        "version = 'x'\ncountry = 'TH'\n[peers.ID]\npurposes = ['asylum']\n"
        "modalities = ['face']\ndaily_quota = {face = 1}\nhours = ['22:00-06:00']"
    )
    from datetime import time

    (w,) = p.peers["ID"].hours
    assert w.contains(time(23, 0)) and w.contains(time(5, 59)) and not w.contains(time(12, 0))


def test_a_window_ending_at_24_00_covers_the_last_minute() -> None:
    from datetime import time

    p = parse_policy(_PEER + "hours = ['00:00-24:00', '22:00-24:00']")
    whole, late = p.peers["ID"].hours
    assert whole.contains(time(23, 59, 30)) and whole.contains(time(0, 0))
    assert late.contains(time(23, 59, 59)) and not late.contains(time(21, 59))
    assert str(whole) == "00:00-24:00" and len(whole.minutes()) == 24 * 60


def test_a_partial_default_fmr_keeps_the_other_modalitys_default() -> None:
    p = parse_policy("version = 'x'\ncountry = 'TH'\n[defaults]\nfmr = { fingerprint = 1e-5 }")
    assert p.fmr(None, Modality.FINGERPRINT) == 1e-5
    assert p.fmr(None, Modality.FACE) == 1e-3  # was 1e-4: the whole table was replaced
