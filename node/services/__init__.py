"""Services: the node's use cases. Handlers and commands call these; these call repositories
and own the transaction (they commit). They raise typed errors, never HTTP exceptions."""
