"""1:N search over a :class:`matcher.gallery.Gallery`: block-wise, vectorised, multi-threaded."""

from matcher.search.results import Candidate, SearchResult

__all__ = ["Candidate", "SearchResult"]
