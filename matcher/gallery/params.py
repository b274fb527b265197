"""Tunables of the gallery store, each with the reason for its value."""

from __future__ import annotations

#: Longest reference or subject reference, in UTF-8 bytes. References are stored as fixed-width
#: byte strings (so they memory-map and binary-search without a Python dict); 128 bytes holds a
#: UUID with a country prefix many times over while keeping 1M references under 128 MB.
MAX_REFERENCE_BYTES = 128

#: Threads used to verify checksums on open: the machine has two cores, and hashing is CPU-bound.
VERIFY_THREADS = 2

#: Times a reader re-reads the manifest when a file it names vanished under it (a writer just
#: compacted and garbage-collected). Two retries cover one concurrent write; more means churn.
OPEN_RETRIES = 3

#: Default number of records per block yielded to search. 8192 face embeddings are 4 MiB, so
#: the block and its score vector stay in L2/L3 while its top-k is taken (see matcher.search).
DEFAULT_BLOCK_SIZE = 8192

#: Size tiers of :meth:`Gallery.tidy`: once this many trailing segments are of one tier (a
#: tier spans a factor of this many records), they are merged into one. Every mapped column
#: file holds a file descriptor and a memory map (9 per fingerprint segment), and enrolments
#: over HTTP append one segment each: with 8 the segments stay under ~8 per tier, ~60 for a
#: million records (~540 descriptors, inside the usual 1,024), while each record is rewritten
#: once per tier, log8(n) times in all (7 for a million).
MERGE_FANIN = 8

#: Finger position code of face records (ISO finger codes are 0..10; faces have none).
FACE_POSITION = -1
#: ISO/IEC 19794-2 finger position codes: 0 unknown, 1..10 right thumb .. left little.
MAX_FINGER_POSITION = 10
