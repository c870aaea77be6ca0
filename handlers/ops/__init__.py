"""Operator commands: status, failed documents, the dead-letter queue and bucket reconciliation."""
