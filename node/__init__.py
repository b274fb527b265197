"""The bdx node: HTTP service, database, peer client and the ``bdx`` command line."""
