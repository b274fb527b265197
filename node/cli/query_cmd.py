"""``bdx query``: an officer's hit/no-hit query to peer nodes, through the local node's API.

The command posts to ``POST /queries`` of the local node (``--url``, default from the
settings' host/port, https when tls_cert_file is set) with an officer's API token (``--token``
or ``BDX_TOKEN``); the node applies its outbound policy, signs and sends the queries over
mutual TLS and logs them, so the officer's machine needs no node keys. Exit status: 0 when
every peer answered (hit, no-hit or a peer's signed refusal), 6 when some peer did not (down,
timed out, bad reply), else 5 when this node's outbound rules refused to ask some peer (not
a configured peer, a purpose its rules do not allow): the results printed are then partial.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from node.cli._common import ConfigOption, JsonOption
from node.errors import NodeError, PeerError
from node.settings import load_settings

#: Seconds to wait for the node: peers' deadlines (30 s default) plus extraction.
CLIENT_TIMEOUT_S = 90.0


class QueryFailedError(NodeError):
    """The local node refused or could not run the query; the exit code follows the node's
    answer (README, "Exit codes"): 2 no token given, 3 bad input, 4 not found, 5 refused
    (token or role), 6 node unreachable or unavailable, 1 otherwise."""

    default_reason = "query_failed"

    def __init__(self, message: str, *, reason: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message, reason=reason)
        self.exit_code = exit_code


#: Exit code of an HTTP status from the node (others: 1, an unexpected failure).
EXIT_OF_STATUS = {400: 3, 413: 3, 422: 3, 401: 5, 403: 5, 404: 4, 503: 6}
#: Exit code when the node cannot be reached at all.
EXIT_UNREACHABLE = 6
#: Exit code when this node's outbound rules refused to ask a peer (README: refused).
EXIT_REFUSED = 5


def _default_url(config: Path | None) -> str:
    settings = load_settings(config, check=False)
    scheme = "https" if settings.tls_cert_file else "http"
    return f"{scheme}://{settings.host}:{settings.port}"


def _body(
    files: list[Path],
    fingers: list[int],
    to: str,
    purpose: str,
    modality: str,
    images: bool,
    case_ref: str | None,
) -> dict[str, Any]:
    if fingers and len(fingers) != len(files):
        raise typer.BadParameter("give one --finger per FILE (or none)")
    items = []
    for i, path in enumerate(files):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise QueryFailedError(
                f"cannot read {path}: {exc.strerror}", reason="bad_file"
            ) from None
        item: dict[str, Any] = {"data": base64.b64encode(data).decode("ascii")}
        if fingers:
            item["finger_position"] = fingers[i]
        items.append(item)
    return {
        "peers": [p.strip().upper() for p in to.split(",") if p.strip()],
        "purpose": purpose,
        "modality": modality,
        "images" if images else "templates": items,
        "case_ref": case_ref,
    }


def _print(result: dict[str, Any]) -> None:
    table = Table(title=f"case {result.get('case_ref') or '-'}")
    for col in ("peer", "status", "outcome", "strength", "reference", "reason/detail"):
        table.add_column(col)
    for r in result["results"]:
        why = r.get("reason") or r.get("detail") or ""
        table.add_row(
            r["peer"],
            r["status"],
            r.get("outcome") or "-",
            r.get("strength") or "-",
            r.get("reference") or "-",
            why,
        )
    console = Console()
    console.print(table)
    if not result["complete"]:
        console.print("[bold]partial results:[/bold] some peers were not asked or did not answer")


def query(
    files: Annotated[list[Path], typer.Argument(help="template files (or images with --image)")],
    to: Annotated[str, typer.Option("--to", help="peer countries, comma-separated: TH,ID")],
    purpose: Annotated[str, typer.Option(help="purpose of the query, e.g. border_control")],
    modality: Annotated[str, typer.Option(help="fingerprint or face")] = "fingerprint",
    finger: Annotated[
        list[int] | None, typer.Option("--finger", help="ISO finger position, one per FILE")
    ] = None,
    image: Annotated[bool, typer.Option("--image", help="FILEs are images to extract")] = False,
    case_ref: Annotated[str | None, typer.Option(help="the officer's case reference")] = None,
    token: Annotated[
        str | None, typer.Option(envvar="BDX_TOKEN", help="officer API token (or BDX_TOKEN)")
    ] = None,
    url: Annotated[str | None, typer.Option(help="node API URL (default: from settings)")] = None,
    ca_file: Annotated[
        Path | None, typer.Option(help="CA bundle that signed the node API's certificate")
    ] = None,
    config: ConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """Ask peer nodes whether they know the person in FILE(s): hit/no-hit per peer."""
    if not token:
        raise QueryFailedError(
            "an officer token is needed (--token or BDX_TOKEN)", reason="no_token", exit_code=2
        )
    body = _body(files, finger or [], to, purpose, modality, image, case_ref)
    base = url or _default_url(config)
    verify: Any = str(ca_file) if ca_file else True
    try:
        with httpx.Client(timeout=CLIENT_TIMEOUT_S, verify=verify) as client:
            response = client.post(
                base.rstrip("/") + "/queries",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
    except httpx.HTTPError as exc:
        raise QueryFailedError(
            f"cannot reach the node at {base}: {exc}",
            reason="node_unreachable",
            exit_code=EXIT_UNREACHABLE,
        ) from None
    if response.status_code != 200:
        try:
            err = response.json()
            reason, detail = str(err.get("error", "query_failed")), str(err.get("detail", ""))
        except ValueError:
            reason, detail = "query_failed", response.text[:200]
        raise QueryFailedError(
            f"the node refused the query: {detail}",
            reason=reason,
            exit_code=EXIT_OF_STATUS.get(response.status_code, 1),
        )
    result = response.json()
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print(result)
    if not result["complete"]:
        results = result["results"]
        failed = [r["peer"] for r in results if r["status"] not in ("answered", "refused_locally")]
        if failed:
            raise PeerError(f"no answer from {', '.join(failed)}", reason="partial_results")
        refused = [
            f"{r['peer']} ({r['reason']})" for r in results if r["status"] == "refused_locally"
        ]
        raise QueryFailedError(
            f"not asked, refused by this node's outbound rules: {', '.join(refused)}",
            reason="refused_locally",
            exit_code=EXIT_REFUSED,
        )
