"""The sending engine: rate limiting, retry policy, batches under leases. Its invariants are
in docs/architecture.md ("Invariants of dispatch")."""
