"""The database connections the deployed runtimes may open at once, against what the database allows.

Every process holds a pool of up to FILEQUEUE_DB_POOL_MAX_SIZE connections (the handler's own setting). The
sum counts each client connection as a database connection even behind RDS Proxy: a session that takes an
advisory lock (migrations, compaction, per-document locks) or sets a parameter is pinned to its database
connection, so the proxy cannot be relied on to multiplex them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cdk.config import ContextError

if TYPE_CHECKING:
    from cdk.config import FileQueueConfig

# Aurora PostgreSQL sets max_connections to LEAST(DBInstanceClassMemory / 9531392, 5000); a Serverless v2
# instance counts the memory of its maximum capacity, and 1 ACU gives 189 connections.
CONNECTIONS_PER_ACU = 189
AURORA_CONNECTION_CAP = 5000
# With a minimum capacity of 0.5 ACU or less Aurora caps max_connections at 2000.
AURORA_LOW_MINIMUM_CAP = 2000
LOW_MINIMUM_ACU = 0.5
# The scheduled compaction function (reserved concurrency 1) and the deploy-time migration hold one each.
SINGLE_CONNECTION_FUNCTIONS = 2


def aurora_max_connections(min_capacity: float, max_capacity: float) -> int:
    cap = AURORA_LOW_MINIMUM_CAP if min_capacity <= LOW_MINIMUM_ACU else AURORA_CONNECTION_CAP
    return min(math.floor(CONNECTIONS_PER_ACU * max_capacity), cap)


def demanded_connections(config: FileQueueConfig, lambda_pool_size: int, worker_pool_size: int) -> dict[str, int]:
    """Connections each deployed runtime may hold at its maximum scale, by a name the error message uses."""
    demand: dict[str, int] = {}
    if config.runs_lambda:
        demand[f"Lambda maxConcurrency {config.max_concurrency} x pool {lambda_pool_size}"] = (
            config.max_concurrency * lambda_pool_size
        )
        demand["compaction and migration functions"] = SINGLE_CONNECTION_FUNCTIONS
    if config.runs_eks:
        demand[
            f"pods workerMaxReplicas {config.worker_max_replicas} x workerProcesses {config.worker_processes} "
            f"x pool {worker_pool_size}"
        ] = config.worker_max_replicas * config.worker_processes * worker_pool_size
    return demand


def check_connection_budget(
    config: FileQueueConfig, *, limit: int | None, limit_name: str, lambda_pool_size: int, worker_pool_size: int
) -> None:
    """Raise ContextError when the runtimes at full scale could open more connections than `limit`."""
    if limit is None:
        return
    demand = demanded_connections(config, lambda_pool_size, worker_pool_size)
    total = sum(demand.values())
    if total > limit:
        parts = " + ".join(f"{name} = {count}" for name, count in demand.items())
        raise ContextError(
            f"context maxConcurrency, workerMaxReplicas and the database size overrun the connection budget: "
            f"{parts} = {total} connections > {limit} ({limit_name}); lower maxConcurrency or workerMaxReplicas, "
            "or raise databaseMaxCapacity (database=aurora) / databaseMaxConnections"
        )


def database_connection_limit(config: FileQueueConfig, proxy_percent: int) -> tuple[int | None, str]:
    """The limit the runtimes' connections must stay within, and how it was found."""
    if config.creates_database:
        database = aurora_max_connections(config.database_min_capacity, config.database_max_capacity)
        limit = database * proxy_percent // 100
        return limit, (
            f"{proxy_percent}% of max_connections {database} that RDS Proxy may use at "
            f"{config.database_min_capacity}..{config.database_max_capacity} ACU"
        )
    if config.database_max_connections is not None:
        return config.database_max_connections, "databaseMaxConnections"
    return None, "unknown"
