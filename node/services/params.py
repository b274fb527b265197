"""Tunables of the node's services, each with the reason for its value."""

from __future__ import annotations

#: Reconcile removes gallery records that have no row in the database (orphans) only while
#: they are at most this many and at most :data:`UNASKED_ORPHAN_SHARE` of the gallery's
#: records; beyond either it refuses, changing nothing, unless the operator asks for the
#: removal (``bdx gallery reconcile --remove-orphans``). The protocol leaves orphans only when
#: a reconcile is killed between undoing a load's batch in the database and removing its
#: templates: one batch of ``bdx gallery load``, 500 records (``loading.BATCH_RECORDS``), at
#: most. A wrong or empty database (a CLI run without BDX_DATABASE_URL on a PostgreSQL node
#: made a fresh SQLite file) holds none of the gallery's records, and their removal, then
#: their erasure, would lose the whole gallery.
UNASKED_ORPHANS = 500
#: Share of the gallery's records (see :data:`UNASKED_ORPHANS`). A batch left by a crash can
#: be a large share of a gallery of a few records; a database that is not the gallery's leaves
#: every record an orphan, so half still tells them apart at any size.
UNASKED_ORPHAN_SHARE = 0.5
#: Records of deletions whose gallery write failed (rows left ``deleting``) that the running
#: node's erasure task finishes per round (:mod:`node.services.erasure`, every
#: ``gallery_erase_interval_s``): one gallery removal and one database transaction of this many
#: references at most, so that a backlog (the gallery unwritable for hours while operators
#: went on deleting) holds the gallery's writer and the database only briefly each round.
STRANDED_DELETIONS_PER_ROUND = 1000
#: A token's last use (``api_tokens.last_used_at``) is noted in memory when the token
#: authenticates a request and written by the running node every this many seconds, for all
#: the tokens used meanwhile in one statement (:class:`node.services.users.TokenUses`), not
#: one write per request: on SQLite every write takes the database's one write lock, which
#: enrolments, deletions and audit records wait for. An admin looking for stale tokens counts
#: in days, so a last use that lags by a minute tells them as much.
TOKEN_USE_INTERVAL_S = 60
#: Seconds a flush of the last uses waits for a lock another writer holds (SQLite's write
#: lock, a PostgreSQL row lock) before it gives up and keeps the uses for the next flush. No
#: request waits for it; it holds one pooled database connection meanwhile, so not the
#: database's usual busy timeout (15 s on SQLite).
TOKEN_USE_LOCK_WAIT_S = 2.0
#: Subjects one bulk deletion (``POST /subjects/deletions``) names at most. Each subject is
#: deleted as ``DELETE /subjects/{id}`` deletes it (two commits and one gallery removal,
#: milliseconds), one after the other in the request's worker thread: this many take a few
#: seconds, well within a client's timeout (``bdx subjects delete --file`` waits 60 s), and
#: the request body stays small (128-character ids: about 130 KB). A longer list is sent in
#: several requests; ``bdx subjects delete --file`` does so.
MAX_BULK_DELETIONS = 1000
#: The running node warns (WARNING in its log, ``GET /users/admin-tokens``) once every live
#: API token of its active admins expires within this many days: an admin can then still
#: issue a new token over the API, and two weeks leave room for a holiday or a change
#: approval; later, only ``bdx users token`` on the node's machine makes an admin again.
ADMIN_TOKEN_WARNING_DAYS = 14
#: ... but never more than this fraction of ``token_max_days``: with short-lived tokens
#: (``token_max_days`` 7) a window of 14 days holds every token ever issued, so the warning
#: would never clear. Half the longest lifetime warns of a token issued at that lifetime in
#: its second half only, and still leaves half of it to issue the next one.
ADMIN_TOKEN_WARNING_FRACTION = 0.5
#: Seconds between the running node's looks at its admins' tokens (and once at start): tokens
#: expire by the day, so an hour late is nothing, and the look is one small query.
ADMIN_TOKEN_CHECK_INTERVAL_S = 3600
#: Seconds a condition of the admins' tokens (expiring, or none left) waits before it is
#: logged again while it lasts: once a day is seen by whoever reads the daily log, and the
#: hourly look does not fill it.
ADMIN_TOKEN_REPEAT_S = 24 * 3600
