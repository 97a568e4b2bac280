"""The durable item ledger."""

from shoal.store.ledger import JobRecord, Ledger

__all__ = ["JobRecord", "Ledger"]
