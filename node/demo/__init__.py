"""The ``bdx demo`` region: set-up (:mod:`node.demo.region`) and servers
(:mod:`node.demo.servers`); the command itself is :mod:`node.cli.demo`."""
