"""``bdx peers terms XX``: what a peer's rules let this node ask it now, signed by the peer.

Through the running node's ``GET /peers/{country}/terms`` with an officer's or admin's token
(not an auditor's: asking contacts the peer; connection options and exit codes:
:mod:`node.cli._client`); the node asks the peer over mutual TLS and verifies its signed
answer. Exit codes as ``bdx query``: 2 a country that is no peer of the node
(``unknown_peer``: nobody was asked) or no token, 5 token or role refused, or this node's own
PKI documents refused; 6 the peer could not be asked or its answer did not verify
(``unreachable``, ``timeout``, ``untrusted_peer``, ``http_error``, ``invalid_reply``), or the
node could not be reached. A peer whose rules hold no terms for this node answers so, signed:
that is an answer, exit 0.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from node.cli._client import (
    CaFileOption,
    NodeClient,
    NodeRequestError,
    TokenFileOption,
    TokenOption,
    UrlOption,
)
from node.cli._common import ConfigOption, JsonOption, print_json, printable
from node.cli.query_cmd import (
    CLIENT_TIMEOUT_S,
    EXIT_REFUSED,
    EXIT_USAGE,
    UNKNOWN_PEER,
    QueryFailedError,
)
from node.countries import normalise_country
from node.errors import PeerError

app = typer.Typer(help="The node's peers: their signed terms for this node.", no_args_is_help=True)

#: The node's reasons (its 502) for a peer it could not ask or whose answer did not verify.
PEER_FAILURES = frozenset(
    {"unreachable", "timeout", "untrusted_peer", "http_error", "invalid_reply"}
)


def _country(value: str) -> str:
    try:
        return normalise_country(value)
    except ValueError:
        raise typer.BadParameter(
            f"{printable(value)} is not an ISO 3166-1 alpha-2 country code"
        ) from None


Country = Annotated[
    str, typer.Argument(help="the peer's country (ISO 3166-1 alpha-2)", callback=_country)
]


def _print(answer: dict[str, Any]) -> None:
    peer = printable(answer["peer"])
    version = answer.get("policy_version")
    rules = "" if version is None else f", rules version {printable(version)}"
    typer.echo(
        f"{peer} terms for {printable(answer['requester'])}{rules}, issued "
        f"{printable(answer['issued_at'])} (signed, verified)"
    )
    terms = answer.get("terms")
    if terms is None:
        typer.echo(f"{peer} grants this node no terms ({printable(answer.get('refusal'))})")
        return
    typer.echo(f"purposes: {', '.join(printable(p) for p in terms['purposes']) or '-'}")
    typer.echo(f"modalities: {', '.join(printable(m) for m in terms['modalities']) or '-'}")
    for q in terms["quotas"]:
        typer.echo(
            f"quota {printable(q['modality'])}: used {printable(q['used'])} of "
            f"{printable(q['limit'])}, {printable(q['remaining'])} left"
        )
    typer.echo(
        f"day {printable(terms['day'])} {printable(terms['timezone'])}, resets at "
        f"{printable(terms['resets_at'])}"
    )
    hours = ", ".join(printable(h) for h in terms["hours"]) or "all day"
    now = "within them now" if terms["within_hours"] else "outside them now"
    typer.echo(f"hours: {hours} ({printable(terms['timezone'])}), {now}")


@app.command("terms")
def terms(
    country: Country,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    url: UrlOption = None,
    ca_file: CaFileOption = None,
    config: ConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show what COUNTRY's rules let this node ask it now: purposes, modalities, each
    modality's daily quota used and left today, when its day resets, its hours of service;
    signed by the peer and verified by the node (asking consumes no quota).

    --json prints the node's answer (peer, requester, format, issued_at, policy_version,
    terms, refusal, terms_jws). Exit codes: 2 COUNTRY is no peer of the node (unknown_peer)
    or no token, 5 token or role refused (officers and admins ask; auditors do not: asking
    contacts the peer) or this node's own PKI documents refused
    (own_stale_crl...), 6 the peer could not be asked or its answer did not verify, or the
    node could not be reached.
    """
    with NodeClient(
        token=token,
        token_file=token_file,
        url=url,
        ca_file=ca_file,
        config=config,
        timeout_s=CLIENT_TIMEOUT_S,
        role="officer or admin",
    ) as client:
        try:
            answer = client.call("GET", f"/peers/{country}/terms", what="the terms request")
        except NodeRequestError as exc:
            said = str(exc).removeprefix("the node refused the terms request: ")
            if exc.reason == UNKNOWN_PEER:  # the node asked nobody (422): an argument refused
                raise QueryFailedError(
                    f"COUNTRY: {said}", reason=UNKNOWN_PEER, exit_code=EXIT_USAGE
                ) from None
            if exc.reason in PEER_FAILURES:
                raise PeerError(f"no terms from {country}: {said}", reason=exc.reason) from None
            if (exc.reason or "").startswith("own_"):  # its 503: own_stale_crl..., as query
                exc.exit_code = EXIT_REFUSED
            raise
    if json_out:
        print_json(answer)
    else:
        _print(answer)
