"""``bdx policy``: validate a rules file, explain a decision, compare two versions (local: they
read rules files only), and show how much of each peer's daily quota the running node has
granted today (``quota``: through the node's API, ``GET /quota``, with an operator's or an
auditor's token; connection options and exit codes: :mod:`node.cli._client`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from node.cli._client import (
    CaFileOption,
    NodeClient,
    TokenFileOption,
    TokenOption,
    UrlOption,
)
from node.cli._common import ConfigOption, print_json, printable
from policy.decision import evaluate_inbound, evaluate_outbound
from policy.diff import diff_policies
from policy.rules import Modality, PolicyFileError, PolicyFileNotFound, load_policy

app = typer.Typer(
    help="Per-country exchange rules: validate, explain, compare; the running node's daily "
    "quota use.",
    no_args_is_help=True,
)

#: Where ``--rules`` is read from when not given: the variable the node's ``policy_file``
#: setting reads, then ``BDX_POLICY``, the name ``bdx policy`` read before (kept for scripts).
RULES_ENV = ["BDX_POLICY_FILE", "BDX_POLICY"]
RulesOpt = Annotated[
    Path,
    typer.Option("--rules", "-r", help="The node's rules file (TOML).", envvar=RULES_ENV),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
#: Seconds to wait for the node's answer to ``quota`` (one read of its database).
QUOTA_TIMEOUT_S = 30.0


@app.command("validate")
def validate(rules: RulesOpt, as_json: JsonOpt = False) -> None:
    """Check a rules file; every problem is reported with its location (one per line on
    stderr, or as "problems" in the --json output), exit 3 when there is any."""
    try:
        policy = load_policy(rules)
    except PolicyFileNotFound:
        raise
    except PolicyFileError as exc:
        if as_json:
            problems = exc.problems or [str(exc)]
            typer.echo(json.dumps({"valid": False, "problems": problems}))
        else:
            for problem in exc.problems:
                typer.echo(f"{rules}: {problem}", err=True)
        raise
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "valid": True,
                    "version": policy.version,
                    "country": policy.country,
                    "peers": sorted(policy.peers),
                    "outbound": sorted(policy.outbound),
                }
            )
        )
    else:
        typer.echo(
            f"{rules}: valid (version {policy.version}, country {policy.country}, "
            f"{len(policy.peers)} inbound peers, {len(policy.outbound)} outbound peers)"
        )


def _parse_time(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time") from exc
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@app.command("check")
def check(
    rules: RulesOpt,
    from_country: Annotated[str, typer.Option("--from", help="Requesting peer (inbound).")] = "",
    to_country: Annotated[str, typer.Option("--to", help="Queried peer (outbound).")] = "",
    purpose: Annotated[str, typer.Option(help="Purpose, e.g. border_control.")] = "",
    modality: Annotated[Modality | None, typer.Option(help="fingerprint or face.")] = None,
    at: Annotated[str | None, typer.Option(help="ISO 8601 time (default: now).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Explain what would happen to a query and why (the day's quota use is not counted here;
    a daily quota of 0 refuses, as the node does).

    Exit code 0 when allowed, 5 when refused.
    """
    if bool(from_country) == bool(to_country):
        raise typer.BadParameter("give exactly one of --from (inbound) or --to (outbound)")
    if not purpose or modality is None:
        raise typer.BadParameter("--purpose and --modality are required")
    policy = load_policy(rules)
    when = _parse_time(at)
    if from_country:
        decision = evaluate_inbound(policy, from_country.upper(), purpose, modality, when)
    else:
        decision = evaluate_outbound(policy, to_country.upper(), purpose, modality, when)
    if as_json:
        typer.echo(json.dumps(decision.to_record()))
    else:
        verdict = "ALLOWED" if decision.allowed else f"REFUSED ({decision.refusal})"
        typer.echo(f"{decision.direction} {decision.peer} {purpose}/{modality}: {verdict}")
        typer.echo(f"policy version {decision.policy_version}")
        for line in decision.reasons:
            typer.echo(f"  {line}")
        if decision.allowed and decision.direction == "inbound":
            rule = policy.peers[decision.peer]
            quota = rule.daily_quota.get(modality)
            typer.echo(
                f"  then: daily quota {quota}, at most {decision.max_candidates} "
                f"candidates, FMR target {decision.fmr:g} (the search holds it stricter "
                "where the node's search_fpir at the gallery's size asks)"
            )
    raise typer.Exit(0 if decision.allowed else 5)


@app.command("diff")
def diff(
    old: Annotated[Path, typer.Argument(help="The rules file in force.")],
    new: Annotated[Path, typer.Argument(help="The proposed rules file.")],
    as_json: JsonOpt = False,
) -> None:
    """Show what a change of rules allows (+), denies (-) or otherwise changes (~)."""
    changes = diff_policies(load_policy(old), load_policy(new))
    if as_json:
        typer.echo(json.dumps([c.__dict__ for c in changes]))
        return
    if not changes:
        typer.echo("no changes")
    for c in changes:
        typer.echo(str(c))


@app.command("quota")
def quota(
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    url: UrlOption = None,
    ca_file: CaFileOption = None,
    config: ConfigOption = None,
    as_json: JsonOpt = False,
) -> None:
    """Show each peer's daily quota per modality on the running node: its rule's current day
    (in the rule's time zone), searches used, the limit and what remains (operators and
    auditors; reading consumes nothing).

    One line per peer and modality; --json prints the node's answer (policy_version, at,
    items). Exit codes as `bdx subjects`: 2 no token, 5 token or role refused, 6 node
    unreachable or running no peer exchange, 7 its database failed.
    """
    with NodeClient(
        token=token,
        token_file=token_file,
        url=url,
        ca_file=ca_file,
        config=config,
        timeout_s=QUOTA_TIMEOUT_S,
        role="operator or auditor",
    ) as client:
        answer = client.call("GET", "/quota", what="the quota reading")
    if as_json:
        print_json(answer)
        return
    typer.echo(f"rules version {printable(answer['policy_version'])} at {printable(answer['at'])}")
    if not answer["items"]:
        typer.echo("no peer may query this node")
    for item in answer["items"]:
        typer.echo(
            f"{printable(item['peer'])}\t{printable(item['modality'])}\t"
            f"{printable(item['day'])} {printable(item['timezone'])}\t"
            f"used {printable(item['used'])} of {printable(item['limit'])}\t"
            f"{printable(item['remaining'])} left"
        )
