"""1:N search over a :class:`matcher.gallery.Gallery`: block-wise, vectorised, multi-threaded.

* :func:`search_face` — cosine top-k for (nq, 128) unit embeddings (float32 or int8 gallery).
* :func:`search_fingerprint` — top-k for one finger with the matcher's batch kernel, decision
  at a threshold or a target FMR; two-stage (:mod:`matcher.search.preselect`, then the exact
  kernel on the best 2%) by default on galleries of 5,000 records or more.
* :func:`search_subjects` — multi-finger probes fused into subject scores.
* :func:`fingerprint_records` / :func:`face_records` build the record batches to append.
"""

from matcher.search.face import face_records, face_schema, search_face
from matcher.search.fingerprint import (
    fingerprint_records,
    fingerprint_schema,
    fingerprint_scores,
    search_fingerprint,
)
from matcher.search.fusion import SubjectCandidate, SubjectResult, search_subjects
from matcher.search.results import Candidate, SearchResult

__all__ = [
    "Candidate",
    "SearchResult",
    "SubjectCandidate",
    "SubjectResult",
    "face_records",
    "face_schema",
    "fingerprint_records",
    "fingerprint_schema",
    "fingerprint_scores",
    "search_face",
    "search_fingerprint",
    "search_subjects",
]
