"""A rules file used across the policy tests."""

RULES = """
version = "2026-11-01.1"
country = "TH"

[defaults]
max_candidates = 10
fmr = { fingerprint = 1e-4, face = 1e-3 }

[peers.ID]
purposes = ["border_control", "law_enforcement"]
modalities = ["fingerprint", "face"]
daily_quota = { fingerprint = 3, face = 2 }
max_candidates = 5
fmr = { fingerprint = 1e-5 }

[peers.MY]
purposes = ["asylum"]
modalities = ["fingerprint"]
daily_quota = { fingerprint = 100 }
hours = ["08:00-17:00"]
timezone = "Asia/Kuala_Lumpur"

[outbound.ID]
purposes = ["border_control"]
modalities = ["fingerprint"]
"""
