"""The node's HTTP API (FastAPI): :func:`node.api.app.create_app` builds it."""
