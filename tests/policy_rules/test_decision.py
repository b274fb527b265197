from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from threading import Barrier

from sqlalchemy import Engine

from policy.decision import PolicyEngine, Refusal, evaluate_inbound, evaluate_outbound
from policy.quota import QuotaLedger
from policy.rules import MAX_DAILY_QUOTA, Modality, parse_policy
from tests.policy_rules.rules_example import RULES

POLICY = parse_policy(RULES)
NOON_KL = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # 12:00 in Kuala Lumpur
NIGHT_KL = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # 22:00 in Kuala Lumpur


def test_allowed_inbound_lists_every_check() -> None:
    d = evaluate_inbound(POLICY, "ID", "border_control", "fingerprint", NOON_KL)
    assert d.allowed and d.refusal is None
    assert [c.name for c in d.checks] == ["peer", "purpose", "modality"]
    assert d.max_candidates == 5 and d.fmr == 1e-5
    rec = d.to_record()
    assert rec["policy_version"] == "2026-11-01.1" and rec["allowed"] is True


def test_unknown_peer() -> None:
    d = evaluate_inbound(POLICY, "SG", "border_control", "fingerprint")
    assert not d.allowed and d.refusal is Refusal.UNKNOWN_PEER


def test_purpose_not_allowed_and_unknown_purpose() -> None:
    d = evaluate_inbound(POLICY, "ID", "asylum", "fingerprint")
    assert d.refusal is Refusal.PURPOSE_NOT_ALLOWED
    assert "allowed: border_control, law_enforcement" in d.reasons[1]
    d = evaluate_inbound(POLICY, "ID", "curiosity", "fingerprint")
    assert d.refusal is Refusal.UNKNOWN_PURPOSE


def test_modality_not_allowed_and_unknown() -> None:
    assert evaluate_inbound(POLICY, "MY", "asylum", "face", NOON_KL).refusal is (
        Refusal.MODALITY_NOT_ALLOWED
    )
    assert evaluate_inbound(POLICY, "MY", "asylum", "iris", NOON_KL).refusal is (
        Refusal.UNKNOWN_MODALITY
    )


def test_hours_of_service_in_peer_time_zone() -> None:
    assert evaluate_inbound(POLICY, "MY", "asylum", "fingerprint", NOON_KL).allowed
    d = evaluate_inbound(POLICY, "MY", "asylum", "fingerprint", NIGHT_KL)
    assert d.refusal is Refusal.OUTSIDE_SERVICE_HOURS
    assert "22:00 Asia/Kuala_Lumpur" in d.reasons[-1]


def test_outbound_rules() -> None:
    assert evaluate_outbound(POLICY, "ID", "border_control", "fingerprint").allowed
    assert evaluate_outbound(POLICY, "ID", "border_control", "face").refusal is (
        Refusal.MODALITY_NOT_ALLOWED
    )
    assert evaluate_outbound(POLICY, "ID", "asylum", "fingerprint").refusal is (
        Refusal.PURPOSE_NOT_ALLOWED
    )
    assert evaluate_outbound(POLICY, "MY", "asylum", "fingerprint").refusal is (
        Refusal.UNKNOWN_PEER
    )


def test_quota_consumed_only_when_static_checks_pass(engine: Engine) -> None:
    ledger = QuotaLedger(engine)
    pe = PolicyEngine(POLICY, ledger)
    at = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert not pe.decide_inbound("ID", "asylum", "fingerprint", at).allowed
    assert ledger.used("ID", "fingerprint", date(2026, 11, 23)) == 0
    for i in range(3):
        d = pe.decide_inbound("ID", "border_control", "fingerprint", at)
        assert d.allowed and d.quota["used"] == i + 1
    d = pe.decide_inbound("ID", "border_control", "fingerprint", at)
    assert d.refusal is Refusal.QUOTA_EXHAUSTED and d.quota == {
        "day": "2026-11-23",
        "used": 3,
        "limit": 3,
    }
    # other modality and the next day have their own counters
    assert pe.decide_inbound("ID", "border_control", "face", at).allowed
    tomorrow = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert pe.decide_inbound("ID", "border_control", "fingerprint", tomorrow).allowed


def test_a_search_given_back_frees_its_place(engine: Engine) -> None:
    """A search this node failed to run is given back: the peer may ask again that day."""
    ledger = QuotaLedger(engine)
    pe = PolicyEngine(POLICY, ledger)
    at = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    granted = [pe.decide_inbound("ID", "border_control", "fingerprint", at) for _ in range(3)]
    assert pe.return_search(granted[-1]) == {"day": "2026-11-23", "used": 2, "limit": 3}
    assert pe.decide_inbound("ID", "border_control", "fingerprint", at).allowed
    refused = pe.decide_inbound("ID", "border_control", "fingerprint", at)
    assert refused.refusal is Refusal.QUOTA_EXHAUSTED
    assert pe.return_search(refused) == {}  # it took nothing
    assert ledger.used("ID", "fingerprint", date(2026, 11, 23)) == 3
    for _ in range(5):  # never below zero, also for a day with no row
        ledger.give_back("ID", "fingerprint", date(2026, 11, 23))
    assert ledger.give_back("ID", "fingerprint", date(2026, 11, 23)) == 0
    assert ledger.give_back("ID", "face", date(2030, 1, 1)) == 0


def test_a_zero_quota_refuses_without_asking_the_ledger(engine: Engine) -> None:
    """A rule that switches a modality off with a quota of 0 is refused by the static checks,
    so ``bdx policy check`` says what the node does."""
    policy = parse_policy(
        RULES.replace("daily_quota = { fingerprint = 3", "daily_quota = { fingerprint = 0")
    )
    d = evaluate_inbound(policy, "ID", "border_control", "fingerprint", NOON_KL)
    assert d.refusal is Refusal.QUOTA_EXHAUSTED and d.checks[-1].name == "quota"
    assert "daily quota of 0 fingerprint searches" in d.reasons[-1]
    ledger = QuotaLedger(engine)
    got = PolicyEngine(policy, ledger).decide_inbound(
        "ID", "border_control", "fingerprint", NOON_KL
    )
    assert got.refusal is Refusal.QUOTA_EXHAUSTED and got.quota == {}
    assert ledger.used("ID", "fingerprint", date(2026, 11, 23)) == 0
    assert evaluate_inbound(policy, "ID", "border_control", "face", NOON_KL).allowed


def test_the_largest_quota_is_counted_on_every_database(engine: Engine) -> None:
    """2**31 - 1 fits the ledger's INTEGER column on PostgreSQL too (one more failed every
    query there with "integer out of range"; the rules now refuse it)."""
    policy = parse_policy(
        RULES.replace(
            "daily_quota = { fingerprint = 3", f"daily_quota = {{ fingerprint = {MAX_DAILY_QUOTA}"
        )
    )
    d = PolicyEngine(policy, QuotaLedger(engine)).decide_inbound(
        "ID", "border_control", "fingerprint", NOON_KL
    )
    assert d.allowed and d.quota["limit"] == MAX_DAILY_QUOTA


def test_concurrent_requests_never_exceed_quota(engine: Engine) -> None:
    policy = parse_policy(
        RULES.replace("daily_quota = { fingerprint = 3", "daily_quota = { fingerprint = 25")
    )
    pe = PolicyEngine(policy, QuotaLedger(engine))
    at = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    workers = 8
    barrier = Barrier(workers)

    def burst(_: int) -> list[bool]:
        barrier.wait()
        return [
            pe.decide_inbound("ID", "border_control", "fingerprint", at).allowed for _ in range(10)
        ]

    with ThreadPoolExecutor(workers) as pool:
        results = [ok for batch in pool.map(burst, range(workers)) for ok in batch]
    assert sum(results) == 25
    assert QuotaLedger(engine).used("ID", "fingerprint", date(2026, 11, 23)) == 25


def test_quota_standings_list_every_rule_on_its_own_day(engine: Engine) -> None:
    """At 01:00 on 24 November in Kuala Lumpur (17:00 UTC on the 23rd) MY's day is the 24th,
    ID's (UTC) the 23rd: each row is read on its rule's day."""
    pe = PolicyEngine(POLICY, QuotaLedger(engine))
    at = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)
    assert pe.decide_inbound("ID", "border_control", "face", at).allowed
    QuotaLedger(engine).consume("MY", "fingerprint", date(2026, 11, 24), 100)
    QuotaLedger(engine).consume("MY", "fingerprint", date(2026, 11, 23), 100)  # not MY's day
    policy, read_at, standings = pe.quota_standings(at)
    assert policy is POLICY and read_at == at
    got = [(s.peer, s.modality, s.timezone, s.day, s.used, s.limit, s.remaining) for s in standings]
    assert got == [
        ("ID", Modality.FACE, "UTC", date(2026, 11, 23), 1, 2, 1),
        ("ID", Modality.FINGERPRINT, "UTC", date(2026, 11, 23), 0, 3, 3),
        ("MY", Modality.FINGERPRINT, "Asia/Kuala_Lumpur", date(2026, 11, 24), 1, 100, 99),
    ]


def test_quota_standings_turn_at_the_rule_s_midnight_and_consume_nothing(engine: Engine) -> None:
    """Asia/Bangkok (UTC+7): a search at 23:59 there counts on that day; at 00:01 the rule's
    next day begins with none used, while UTC's date is the same for both."""
    rules = parse_policy(
        'version = "bkk-1"\ncountry = "TH"\n[peers.MY]\npurposes = ["asylum"]\n'
        'modalities = ["fingerprint", "face"]\n'
        'daily_quota = { fingerprint = 3, face = 2 }\ntimezone = "Asia/Bangkok"\n'
    )
    pe = PolicyEngine(rules, QuotaLedger(engine))
    late = datetime(2026, 3, 1, 16, 59, tzinfo=UTC)  # 23:59 in Bangkok
    early = datetime(2026, 3, 1, 17, 1, tzinfo=UTC)  # 00:01 on 2 March in Bangkok
    assert pe.decide_inbound("MY", "asylum", "fingerprint", late).allowed
    standings = pe.quota_standings(late)[2]
    assert [(s.modality, s.day, s.used, s.limit, s.remaining) for s in standings] == [
        (Modality.FACE, date(2026, 3, 1), 0, 2, 2),
        (Modality.FINGERPRINT, date(2026, 3, 1), 1, 3, 2),
    ]
    standings = pe.quota_standings(early)[2]
    assert [(s.day, s.used, s.remaining) for s in standings] == [
        (date(2026, 3, 2), 0, 2),
        (date(2026, 3, 2), 0, 3),
    ]
    for _ in range(3):  # readings take nothing: the day's other two searches are still there
        pe.quota_standings(late)
    assert [pe.decide_inbound("MY", "asylum", "fingerprint", late).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]


def test_a_lowered_limit_leaves_none_remaining(engine: Engine) -> None:
    """A reload that lowers a quota below the day's use shows the use and 0 remaining."""
    text = 'version = "v"\ncountry = "TH"\n[peers.VN]\npurposes = ["asylum"]\n'
    text += 'modalities = ["face"]\ndaily_quota = {{ face = {} }}\n'
    pe = PolicyEngine(parse_policy(text.format(3)), QuotaLedger(engine))
    at = datetime(2026, 4, 1, 12, tzinfo=UTC)
    for _ in range(3):
        assert pe.decide_inbound("VN", "asylum", "face", at).allowed
    pe.policy = parse_policy(text.format(1))
    (standing,) = pe.quota_standings(at)[2]
    assert (standing.used, standing.limit, standing.remaining) == (3, 1, 0)
