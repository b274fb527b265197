"""``bdx query``: an officer's hit/no-hit query to peer nodes, through the local node's API.

The command posts to ``POST /queries`` of the local node with an officer's API token (see
:mod:`node.cli._client` for ``--url``, ``--token`` and ``--ca-file``); the node applies its
outbound policy, signs and sends the queries over mutual TLS and logs them, so the officer's
machine needs no node keys. Exit status: 0 when every peer answered (hit, no-hit or a peer's
signed refusal), 6 when some peer did not (down, timed out, bad reply), else 5 when this
node's outbound rules refused to ask some peer (a purpose or modality its rules do not allow
for it), or its own trust list or CRL is stale or its own certificate expired
(``own_stale_crl``...): the results printed are then partial. A ``--to`` country that is no
peer of this node (a well-formed code, ``ZZ`` or ``FR``, its settings or rules hold no peer
for) makes the node refuse the whole query, asking nobody (422 ``unknown_peer``, whatever its
own PKI documents say): exit 2 in one line, an option value refused. A ``--to`` value that is
no country code at all (``Z9``, ``ZZZ``, ``QA1``) is refused before the node is asked (exit 2,
``[usage]``, as for any option).

``bdx queries list|show|poll|outcome`` read back the queries sent (``GET /queries``,
``GET /queries/{id}``), fetch the reply a peer kept for a query the node stopped waiting
for (``POST /queries/{id}/poll``) and ask the peer that gave a query a hit for the
examiner's outcome of it (``POST /queries/{id}/outcome``); the last two make the node
contact the peer, so officers (their own queries) and admins run them, auditors do not (exit
5, ``wrong_role``). They are a group of their own:
``bdx query FILE`` takes a file name where a subcommand's name would stand (a file named
``list`` would be one).
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from node.api.schemas.queries import OFFICER_NAME_PATTERN, QueryIn
from node.cli._client import (
    CaFileOption,
    NodeClient,
    NodeRequestError,
    TokenFileOption,
    TokenOption,
    UrlOption,
)
from node.cli._common import ConfigOption, JsonOption, print_json, printable, read_input
from node.countries import normalise_country
from node.db.models import Modality
from node.errors import NotFoundError, PeerError
from node.service_errors import ConflictError

#: Seconds to wait for the node's answer by default: the longest peer deadline its settings
#: allow (``peer_timeout_s`` <= 300 s) plus extraction and signing. At 90 s, a node whose
#: peers were given 120 s answered after the command had given up and blamed the node.
CLIENT_TIMEOUT_S = 330.0
#: Longest --timeout: an hour is beyond any answer; inf or 1e300 overflowed the socket timeout.
MAX_TIMEOUT_S = 3600.0
NodeTimeout = Annotated[
    float,
    typer.Option(
        min=1, max=MAX_TIMEOUT_S, help="seconds to wait for the node's answer (exit 6 after)"
    ),
]
#: Largest FILE read: no node takes a larger upload (``max_upload_bytes`` is at most 256 MiB),
#: so a bigger file (a disk image named by mistake) is refused before it is read into memory.
MAX_FILE_BYTES = 256 * 1024 * 1024


class QueryFailedError(NodeRequestError):
    """The local node refused or could not run the query, or its outbound rules refused to
    ask some peer; the exit code follows the answer (README, "Exit codes")."""

    default_reason = "query_failed"


#: Exit code when this node's outbound rules refused to ask a peer (README: refused).
EXIT_REFUSED = 5
#: Exit code when a ``--to`` country is no peer of this node (README: an option value refused).
EXIT_USAGE = 2
#: The node's reason for a country it holds no peer for (no rule or no address).
UNKNOWN_PEER = "unknown_peer"


#: The option of each field of the node's ``QueryIn`` whose value it refuses.
_FIELD_OPTIONS = {
    "peers": "--to",
    "purpose": "--purpose",
    "modality": "--modality",
    "case_ref": "--case-ref",
    "templates": "FILE",
    "images": "FILE",
}


def _body(
    files: list[Path],
    fingers: list[int],
    to: str,
    purpose: str,
    modality: Modality,
    images: bool,
    case_ref: str | None,
) -> dict[str, Any]:
    if fingers and len(fingers) != len(files):
        raise typer.BadParameter("give one --finger per FILE (or none)")
    items: list[dict[str, Any]] = [
        {"data": ""} | ({"finger_position": fingers[i]} if fingers else {})
        for i in range(len(files))
    ]
    body = {
        "peers": [p.strip().upper() for p in to.split(",") if p.strip()],
        "purpose": purpose,
        "modality": modality.value,
        "images" if images else "templates": items,
        "case_ref": case_ref,
    }
    _check_options(body)
    for item, path in zip(items, files, strict=True):
        data = read_input(path, "query file", max_bytes=MAX_FILE_BYTES)
        item["data"] = base64.b64encode(data).decode("ascii")
    return body


def _check_options(body: dict[str, Any]) -> None:
    """Refuse, before any file is read or the node asked, what the node's own schema would
    refuse in the options: a usage error naming the option (exit 2; the node's 422 was 3)."""
    try:
        QueryIn.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error["loc"]
        if not loc:  # the model's own check: a peer listed twice
            option = "--to"
        elif loc[-1] == "finger_position":
            option = "--finger"
        else:
            option = _FIELD_OPTIONS.get(str(loc[0]), str(loc[0]))
        why = error.get("ctx", {}).get("error") or error["msg"]  # a validator's own words
        raise typer.BadParameter(str(why), param_hint=option) from None


#: Columns of the results table, in order. No cell is ever cut: the hit reference is what the
#: officer quotes to follow up, and a reason or detail is the only word on why there is none.
_COLUMNS = ("peer", "status", "outcome", "strength", "reference", "reason / detail")
#: Columns a rounded table with a cell padding of one space each side spends on other things
#: than its cells: per column, its two padding spaces and its left border; then the last border.
_TABLE_COLUMN_EXTRA = 3
_TABLE_EXTRA = 1


def _rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row of printable cells per peer, in :data:`_COLUMNS` order (peers' words included:
    a reason or detail may come from a peer)."""
    return [
        tuple(
            printable(cell)
            for cell in (
                r["peer"],
                r["status"],
                r.get("outcome") or "-",
                r.get("strength") or "-",
                r.get("reference") or "-",
                r.get("reason") or r.get("detail") or "",
            )
        )
        for r in result["results"]
    ]


def _table_width(rows: list[tuple[str, ...]]) -> int:
    """Columns the results table needs to show every cell of its short-code columns whole
    and every word of its last (free-text) column whole."""
    widest = [
        max(
            len(piece)
            for cell in (col, *(row[i] for row in rows))
            for piece in ([*cell.split(), ""] if col == _COLUMNS[-1] else [cell])
        )
        for i, col in enumerate(_COLUMNS)
    ]
    return sum(widest) + _TABLE_COLUMN_EXTRA * len(_COLUMNS) + _TABLE_EXTRA


def _print(result: dict[str, Any]) -> None:
    """The results as a table where the terminal is wide enough to show each word of it
    whole, else as lines, each peer's name then its fields one a line (its detail too where
    there is a reason), that the terminal wraps where it must (piped output is 80 columns).
    A reference was cut to ``uaU0Ug8ywvtblgdGgGpF…`` at 80 columns: the officer could not
    follow it up."""
    console = Console()
    title = Text(f"case {printable(result.get('case_ref') or '-')}")
    rows = _rows(result)
    if _table_width(rows) <= console.width:
        table = Table(title=title)
        # rich narrows the widest columns first: it folded the reference at 81-91 columns
        # while the reason's column had room. Only that last column (free text) wraps.
        for col in _COLUMNS:
            table.add_column(col, overflow="fold", no_wrap=col != _COLUMNS[-1])
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        console.print(table)
    else:
        console.print(title, soft_wrap=True)
        for r in result["results"]:
            console.print(Text(printable(r["peer"])), soft_wrap=True)
            for field in ("status", "outcome", "strength", "reference", "reason", "detail"):
                if r.get(field):
                    console.print(Text(f"  {field}: {printable(r[field])}"), soft_wrap=True)
    if not result["complete"]:
        console.print("[bold]partial results:[/bold] some peers were not asked or did not answer")


def query(
    files: Annotated[list[Path], typer.Argument(help="template files (or images with --image)")],
    to: Annotated[str, typer.Option("--to", help="peer countries, comma-separated: TH,ID")],
    purpose: Annotated[str, typer.Option(help="purpose of the query, e.g. border_control")],
    modality: Annotated[Modality, typer.Option(help="fingerprint or face")] = Modality.FINGERPRINT,
    finger: Annotated[
        list[int] | None, typer.Option("--finger", help="ISO finger position, one per FILE")
    ] = None,
    image: Annotated[bool, typer.Option("--image", help="FILEs are images to extract")] = False,
    case_ref: Annotated[str | None, typer.Option(help="the officer's case reference")] = None,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    url: UrlOption = None,
    ca_file: CaFileOption = None,
    config: ConfigOption = None,
    json_out: JsonOption = False,
    timeout: NodeTimeout = CLIENT_TIMEOUT_S,
) -> None:
    """Ask peer nodes whether they know the person in FILE(s): hit/no-hit per peer."""
    client = NodeClient(
        token=token,
        token_file=token_file,
        url=url,
        ca_file=ca_file,
        config=config,
        timeout_s=timeout,
        role="officer",
    )
    with client:
        body = _body(files, finger or [], to, purpose, modality, image, case_ref)
        try:
            result = client.call("POST", "/queries", json=body, what="the query")
        except NodeRequestError as exc:
            if exc.reason == UNKNOWN_PEER:  # the node asked nobody (422): an option refused
                said = str(exc).removeprefix("the node refused the query: ")
                raise QueryFailedError(
                    f"--to: {said}", reason=UNKNOWN_PEER, exit_code=EXIT_USAGE
                ) from None
            raise
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print(result)
    if not result["complete"]:
        results = result["results"]
        failed = [r["peer"] for r in results if r["status"] not in ("answered", "refused_locally")]
        if failed:
            raise PeerError(f"no answer from {', '.join(failed)}", reason="partial_results")
        local = [r for r in results if r["status"] == "refused_locally"]
        refused = [f"{r['peer']} ({r['reason']})" for r in local]
        own = sorted({str(r["reason"]) for r in local if str(r["reason"]).startswith("own_")})
        why = (
            f"this node's own PKI documents make its exchange refuse ({', '.join(own)}; its "
            "/health says which, and since when where it has a date)"
            if own
            else "refused by this node's outbound rules"
        )
        raise QueryFailedError(
            f"not asked, {why}: {', '.join(refused)}",
            reason="refused_locally",
            exit_code=EXIT_REFUSED,
        )


history_app = typer.Typer(
    help="The queries you sent to peers, read back from the running node, and late replies "
    "fetched (officers; admins and auditors read every officer's).",
    no_args_is_help=True,
)

#: Seconds to wait for the node when reading the history (a scan of its exchange log).
HISTORY_TIMEOUT_S = 60.0
#: Queries per page when listing (the API's largest page is 1000).
PAGE_DEFAULT = 100
#: The node's 409 reasons of a poll: the query holds no reply to fetch (README: exit 3, a
#: request that clashes with the node's state).
POLL_CONFLICTS = ("not_timed_out", "no_status_url")
#: The node's 409 reason of an outcome asked for a query without a hit (exit 3, as a poll's).
NO_HIT = "no_hit"

QueryId = Annotated[str, typer.Argument(help="the query's id (query_id of bdx query --json)")]


def _history_client(
    token: str | None,
    token_file: Path | None,
    url: str | None,
    ca_file: Path | None,
    config: Path | None,
    timeout_s: float = HISTORY_TIMEOUT_S,
    *,
    role: str = "officer, admin or auditor",
) -> NodeClient:
    return NodeClient(
        token=token,
        token_file=token_file,
        url=url,
        ca_file=ca_file,
        config=config,
        timeout_s=timeout_s,
        role=role,
    )


def _query_path(query_id: str) -> str:
    return "/queries/" + quote(query_id, safe="")


def _line(q: dict[str, Any]) -> str:
    cells = (
        q["sent_at"],
        q["query_id"],
        q["peer"],
        q["status"] + (" (late)" if q["late"] else ""),
        q.get("outcome") or "-",
        q.get("reference") or "-",
        q.get("case_ref") or "-",
    )
    return "\t".join(printable(c) for c in cells)


def _show(q: dict[str, Any]) -> None:
    for name in ("query_id", "peer", "purpose", "modality", "case_ref", "officer", "sent_at"):
        typer.echo(f"{name}: {printable(q.get(name) or '-')}")
    typer.echo(f"status: {q['status']}" + (" (late reply)" if q["late"] else ""))
    for name in ("outcome", "reason", "strength", "reference", "detail", "replied_at"):
        if q.get(name):
            typer.echo(f"{name}: {printable(q[name])}")
    if q["pollable"]:
        typer.echo(f"the peer may still answer: bdx queries poll {printable(q['query_id'])}")
    follow_up = q.get("follow_up")
    if follow_up:
        typer.echo(f"examiner's outcome: {_follow_up_words(follow_up)}")


def _follow_up_words(f: dict[str, Any]) -> str:
    """An outcome the peer answered, in words: ``confirmed (recorded T, received T)``."""
    if f["status"] != "answered":
        return f"{f['status']} (received {f['received_at']})"
    when = [f"received {f['received_at']}"]
    if f.get("outcome_at"):
        when.insert(0, f"recorded {f['outcome_at']}")
    return f"{f['outcome']} ({', '.join(when)})"


def _peer_option(value: str | None) -> str | None:
    """A country code, checked here as the node checks it (its 422 was exit 3: a usage error)."""
    if value is None:
        return None
    try:
        return normalise_country(value)
    except ValueError:
        raise typer.BadParameter(
            f"{printable(value)} is not an ISO 3166-1 alpha-2 country code"
        ) from None


def _officer_option(value: str | None) -> str | None:
    """A user name, checked here as the node checks it (its 422 was exit 3: a usage error)."""
    if value is not None and re.fullmatch(OFFICER_NAME_PATTERN, value) is None:
        raise typer.BadParameter(f"{printable(value)} is no user name")
    return value


def _since_option(value: str | None) -> str | None:
    """An ISO 8601 time, UTC when it names no zone (as ``bdx audit list --since``), sent to
    the node with its offset: a value the node would refuse (422, exit 3) is a usage error
    here (exit 2)."""
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    try:
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    except OverflowError:  # 0001-01-01T00:00+05:00 is before year 1 in UTC
        raise typer.BadParameter(f"{value!r} is out of range once in UTC") from None


def _next_page(options: dict[str, Any], offset: int) -> str:
    """The command that lists the next page: this one's filters and limit, at ``offset``."""
    words = ["bdx", "queries", "list"]
    for name, value in options.items():
        if value is not None:
            words += ["--" + name.replace("_", "-"), str(value)]
    return shlex.join([*words, "--offset", str(offset)])


@history_app.command("list")
def list_queries(
    since: Annotated[
        str | None,
        typer.Option(
            parser=_since_option,
            help="only those sent at or after this time (ISO 8601, UTC if no zone)",
        ),
    ] = None,
    case_ref: Annotated[str | None, typer.Option(help="only this case reference's")] = None,
    peer: Annotated[
        str | None, typer.Option(parser=_peer_option, help="only those sent to this country")
    ] = None,
    officer: Annotated[
        str | None,
        typer.Option(
            parser=_officer_option, help="admins and auditors: only this officer's (a user name)"
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="queries to show (one page)")
    ] = PAGE_DEFAULT,
    offset: Annotated[
        int, typer.Option(min=0, help="continue from this offset (the last page's next_offset)")
    ] = 0,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    url: UrlOption = None,
    ca_file: CaFileOption = None,
    config: ConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """List the queries sent to peers, oldest first: sent time, query id, peer, latest status,
    outcome, hit reference and case reference. An officer sees their own; an admin or auditor
    every officer's, each listing recorded in the audit trail."""
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    for name, value in (("since", since), ("case_ref", case_ref), ("officer", officer)):
        if value is not None:
            params[name] = value
    if peer is not None:
        peer = params["peer"] = peer.strip().upper()
    with _history_client(token, token_file, url, ca_file, config) as client:
        page = client.call("GET", "/queries", params=params, what="the listing")
    if json_out:
        print_json(page)
        return
    if not page["items"] and offset == 0:
        typer.echo("no queries sent")
    for item in page["items"]:
        typer.echo(_line(item))
    if page["next_offset"] is not None:
        options: dict[str, Any] = {
            "since": since,
            "case_ref": case_ref,
            "peer": peer,
            "officer": officer,
        }
        options["limit"] = limit if limit != PAGE_DEFAULT else None
        typer.echo(f"more: {_next_page(options, page['next_offset'])}", err=True)


@history_app.command("show")
def show_query(
    query_id: QueryId,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    url: UrlOption = None,
    ca_file: CaFileOption = None,
    config: ConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show one query sent: when, to whom, why, its latest status and, on a hit, the
    reference to quote. Another officer's query, like one never sent, is not found (exit 4)."""
    with _history_client(token, token_file, url, ca_file, config) as client:
        found = client.call("GET", _query_path(query_id), what="the query")
    if json_out:
        print_json(found)
        return
    _show(found)


@history_app.command("poll")
def poll_query(
    query_id: QueryId,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    url: UrlOption = None,
    ca_file: CaFileOption = None,
    config: ConfigOption = None,
    json_out: JsonOption = False,
    timeout: NodeTimeout = CLIENT_TIMEOUT_S,
) -> None:
    """Fetch the reply a peer kept for a query the node stopped waiting for (status timeout
    after the peer accepted it). Exit 0 when the peer answered (hit, no-hit or its refusal),
    6 when it still searches (poll again later) or could not be asked, 4 when it no longer
    holds the reply (expired), 3 when the query holds no reply to fetch (answered already, or
    never accepted by the peer)."""
    with _history_client(
        token, token_file, url, ca_file, config, timeout, role="officer or admin"
    ) as client:
        try:
            found = client.call("POST", _query_path(query_id) + "/poll", what="the poll")
        except NodeRequestError as exc:
            if exc.reason in POLL_CONFLICTS:
                exc.exit_code = ConflictError.exit_code
            raise
    if json_out:
        print_json(found)
    else:
        _show(found)
    status = found["status"]
    if status == "expired":
        raise NotFoundError(
            f"{found['peer']} no longer holds the reply of query {query_id}", reason="expired"
        )
    if status == "pending":
        raise PeerError(f"{found['peer']} is still searching: poll again later", reason="pending")
    if status != "answered":
        raise PeerError(f"{found['peer']} did not answer: {status}", reason=status)


@history_app.command("outcome")
def hit_outcome(
    query_id: QueryId,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    url: UrlOption = None,
    ca_file: CaFileOption = None,
    config: ConfigOption = None,
    json_out: JsonOption = False,
    timeout: NodeTimeout = CLIENT_TIMEOUT_S,
) -> None:
    """Ask the peer that gave a query a hit for its examiner's outcome (pending, confirmed,
    not_confirmed, withdrawn), signed by the peer and verified by the node. Exit 0 when the
    peer answered, 4 when it keeps no such reference any more (its follow-up period is over),
    6 when it could not be asked or its answer did not verify, 3 when the query got no hit
    (nothing to ask), 4 for a query not found, 5 when the node's own PKI documents are
    refused or the token's role is (officers ask for their own queries, admins for any;
    auditors do not: asking contacts the peer)."""
    with _history_client(
        token, token_file, url, ca_file, config, timeout, role="officer or admin"
    ) as client:
        try:
            found = client.call("POST", _query_path(query_id) + "/outcome", what="the outcome")
        except NodeRequestError as exc:
            if exc.reason == NO_HIT:
                exc.exit_code = ConflictError.exit_code
            elif (exc.reason or "").startswith("own_"):  # its 503: own_stale_crl..., as query
                exc.exit_code = EXIT_REFUSED
            raise
    if json_out:
        print_json(found)
    else:
        for r in found["results"]:
            cells = (
                r["peer"],
                r["reference"],
                r["status"],
                r.get("outcome") or "-",
                r.get("outcome_at") or "-",
            )
            typer.echo("\t".join(printable(c) for c in cells))
            if r["status"] != "answered" and r.get("detail"):
                typer.echo(f"  {printable(r['detail'])}", err=True)
    for r in found["results"]:
        if r["status"] == "unknown_reference":
            raise NotFoundError(
                f"{r['peer']} keeps no reference {r['reference']} for this node any more",
                reason="unknown_reference",
            )
        if r["status"] != "answered":
            raise PeerError(f"no outcome from {r['peer']}: {r['status']}", reason=r["status"])
