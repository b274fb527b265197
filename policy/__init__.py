"""Per-country exchange rules and the decisions taken under them."""
