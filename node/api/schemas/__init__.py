"""Wire schemas (pydantic) of the HTTP API, one module per resource; separate from the ORM."""
