import pytest

from policy.restrictions import (
    RestrictionError,
    check_record,
    filter_shareable,
    parse_restrictions,
)


def test_asylum_seeker_never_reported_to_nationality() -> None:
    r = parse_restrictions(["asylum_nationality:MM"])
    assert not check_record(r, "MM", "border_control").shareable
    assert not check_record(r, "MM", "law_enforcement").shareable
    assert check_record(r, "ID", "border_control").shareable


def test_peer_and_purpose_restrictions() -> None:
    r = parse_restrictions(["peers:ID,MY", "purposes:border_control"])
    assert check_record(r, "ID", "border_control").shareable
    assert not check_record(r, "SG", "border_control").shareable
    assert not check_record(r, "ID", "law_enforcement").shareable


def test_no_consent_never_shared() -> None:
    r = parse_restrictions(["no_exchange_consent"])
    v = check_record(r, "ID", "border_control")
    assert not v.shareable and v.reason == "consent does not cover exchange"


def test_round_trip_strings() -> None:
    items = ["asylum_nationality:MM", "no_exchange_consent", "peers:ID", "purposes:asylum"]
    assert sorted(parse_restrictions(items).to_strings()) == sorted(items)


@pytest.mark.parametrize(
    "bad",
    [
        "asylum_nationality:Myanmar",
        "peers:",
        "purposes:spying",
        "vip",
        "peers:id",
        "peers:TH,UK",
        "asylum_nationality:EU",
    ],
)
def test_malformed(bad: str) -> None:
    with pytest.raises(RestrictionError):
        parse_restrictions([bad])


def test_filter_shareable_splits_candidates() -> None:
    cands = ["ref-a", "ref-b", "ref-c"]
    restr = [
        parse_restrictions([]),
        parse_restrictions(["asylum_nationality:ID"]),
        parse_restrictions(["peers:MY"]),
    ]
    kept, dropped = filter_shareable(cands, restr, "ID", "border_control")
    assert kept == ["ref-a"]
    assert [c for c, _ in dropped] == ["ref-b", "ref-c"]
    with pytest.raises(ValueError):
        filter_shareable(cands, restr[:1], "ID", "border_control")
