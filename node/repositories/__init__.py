"""Repositories: the only code that builds queries. One class per aggregate, given a Session;
they flush but never commit (services own the transaction)."""
