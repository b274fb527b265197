"""Process hardening of the node's long-running processes (``bdx serve``, search workers).

They hold what must not reach a disk: probes of queries in flight (destroyed when there is no
match), face and fingerprint images being enrolled, the node's private keys and the
hit-reference secret. A crash in native code (numba, dlib, OpenSSL) on a host that collects
core dumps (systemd-coredump, a container runtime, ``ulimit -c unlimited``) would write all
of that to a file. :func:`no_core_dumps` sets the process's core size limit to 0, soft and
hard, so a dump cannot be re-enabled from inside; child processes inherit it.
"""

from __future__ import annotations

import resource


def no_core_dumps() -> None:
    """No core file for this process or its children (``RLIMIT_CORE`` 0, soft and hard)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
