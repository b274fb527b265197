"""Regional PKI, signed messages (JWS) and the tamper-evident exchange log."""
