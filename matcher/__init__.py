"""Template extraction (fingerprint minutiae, face embeddings) and one-to-many search."""
