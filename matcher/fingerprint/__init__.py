"""Fingerprint minutiae templates: extraction, ISO/IEC 19794-2 encoding and comparison."""
