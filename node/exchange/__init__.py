"""Peer exchange: signed hit/no-hit queries between country nodes (wire messages, replay
protection, opaque references)."""
