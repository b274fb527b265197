"""Process hardening of the node's long-running processes (``bdx serve``, search workers).

They hold what must not reach a disk: probes of queries in flight (destroyed when there is no
match), face and fingerprint images being enrolled, the node's private keys and the
hit-reference secret. A crash in native code (numba, dlib, OpenSSL) on a host that collects
core dumps (systemd-coredump, a container runtime, ``ulimit -c unlimited``) would write all
of that to a file. :func:`no_core_dumps` sets the process's core size limit to 0, soft and
hard, so a dump cannot be re-enabled from inside; child processes inherit it.

The kernel ignores the limit when ``/proc/sys/kernel/core_pattern`` pipes dumps to a program;
systemd-coredump honours it, other collectors (apport, abrt, some container runtimes) may
not: on such hosts exclude the node's service from collection. ``PR_SET_DUMPABLE`` would
close that gap too, but it also forbids the same user's debuggers and ``/proc/<pid>`` reads
(py-spy, the operator's own diagnosis), so it is left to the host's configuration. The bulk
load (``bdx gallery load``) reads images that are on the operator's disk already.
"""

from __future__ import annotations

import resource


def no_core_dumps() -> None:
    """No core file for this process or its children (``RLIMIT_CORE`` 0, soft and hard)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
