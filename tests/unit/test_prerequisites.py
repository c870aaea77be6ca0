from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from handlers.adapters.migrate import ServerFacts, prerequisite_problem

EMBEDDED = ServerFacts(
    server_version_num=160002,
    server_version="16.2",
    database="filequeue",
    role="app",
    pgvector_available="0.6.2",
    pgvector_installed=None,
)


def facts(**changes: Any) -> ServerFacts:
    return dataclasses.replace(EMBEDDED, **changes)


def test_a_current_server_with_pgvector_offered_passes():
    assert prerequisite_problem(facts()) is None
    assert prerequisite_problem(facts(pgvector_installed="0.8.0", pgvector_available="0.8.0")) is None


def test_a_server_older_than_13_is_named_with_the_fix():
    problem = prerequisite_problem(facts(server_version_num=120017, server_version="12.17"))
    assert problem is not None
    assert "PostgreSQL 12.17 is too old" in problem
    assert "13 or newer" in problem


def test_a_server_without_pgvector_says_to_install_the_package():
    problem = prerequisite_problem(facts(pgvector_available=None))
    assert problem is not None
    assert "pgvector extension is not installed" in problem


@pytest.mark.parametrize(
    ("installed", "available", "where"),
    [(None, "0.4.4", "offered by the server"), ("0.4.1", "0.7.0", "installed in")],
)
def test_a_pgvector_without_hnsw_is_named_with_the_statement_to_run(installed, available, where):
    problem = prerequisite_problem(facts(pgvector_installed=installed, pgvector_available=available))
    assert problem is not None
    assert where in problem
    assert "HNSW" in problem
    assert "ALTER EXTENSION vector UPDATE;" in problem
