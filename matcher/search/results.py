"""What a 1:N search returns: ranked candidates and, given a threshold, the decision."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from matcher.gallery import Gallery
from matcher.search.topk import TopK


@dataclass(frozen=True)
class Candidate:
    """One gallery record: its reference, subject, finger position (-1 face), score."""

    reference: str
    subject: str
    position: int
    score: float


@dataclass(frozen=True)
class SearchResult:
    """Candidates best first; ``hit`` is ``None`` unless a threshold was given, else whether the
    best score reaches it (ISO/IEC 19795-1: match when score >= threshold)."""

    candidates: tuple[Candidate, ...]
    threshold: float | None = None

    @property
    def hit(self) -> bool | None:
        if self.threshold is None:
            return None
        return bool(self.candidates) and self.candidates[0].score >= self.threshold

    @property
    def hits(self) -> tuple[Candidate, ...]:
        """Candidates at or above the threshold (all of them when there is none)."""
        if self.threshold is None:
            return self.candidates
        return tuple(c for c in self.candidates if c.score >= self.threshold)


def resolve(gallery: Gallery, top: TopK, threshold: float | None) -> SearchResult:
    """Candidates of ``top`` in its order, each with its reported value (``TopK.values``)."""
    refs, subs, pos = gallery.resolve(top.ids)
    cands = tuple(
        Candidate(r, s, int(p), float(sc))
        for r, s, p, sc in zip(refs, subs, pos, np.asarray(top.values).tolist(), strict=True)
    )
    return SearchResult(cands, threshold)
