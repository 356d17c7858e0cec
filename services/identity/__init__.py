"""Who may do what: the credential registry (public keys, roles, ids) and identity checks."""
