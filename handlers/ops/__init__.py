"""The read and maintenance side, on one database session (`db.session`).

The client behind `handlers.api`, search, graph reads, status, failures, the dead-letter queue,
reconciliation, compaction and re-embedding.
"""
