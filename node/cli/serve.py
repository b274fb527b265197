"""``bdx serve``: run the node's HTTP API under uvicorn."""

from __future__ import annotations

from typing import Annotated, Any

import typer
import uvicorn

from node.api.app import create_app
from node.cli._common import ConfigOption
from node.settings import load_settings


def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (default: settings)")] = None,
    port: Annotated[int | None, typer.Option(help="port to bind (default: settings)")] = None,
    config: ConfigOption = None,
) -> None:
    """Serve the node API (TLS when tls_cert_file/tls_key_file are set; required in production)."""
    overrides: dict[str, Any] = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = load_settings(config, **overrides)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
        log_level="debug" if settings.debug else "info",
        server_header=False,
    )
