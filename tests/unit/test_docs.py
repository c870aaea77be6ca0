"""docs/faults.md against the tests: every case id a test name uses has an entry, every test it names exists.

The test files are parsed with `ast`, never imported.
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING

from tests.paths import REPO_ROOT

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

FAULTS = REPO_ROOT / "docs" / "faults.md"
TESTS = REPO_ROOT / "tests"
CASE_IDS_IN_A_TEST_NAME = re.compile(r"^test_((?:[a-e]\d+_)+)")
CASE_HEADING = re.compile(r"^### ([A-E]\d+) ", re.MULTILINE)
TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def defined_tests(path: Path) -> set[str]:
    return {
        node.name
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    }


def case_ids_used_by_tests(test_files: Iterable[Path], root: Path) -> dict[str, list[str]]:
    """Each case id a test name starts with (`test_a2_a3_...` uses A2 and A3), with the tests using it."""
    used: dict[str, list[str]] = {}
    for path in test_files:
        for name in sorted(defined_tests(path)):
            if match := CASE_IDS_IN_A_TEST_NAME.match(name):
                for case_id in match[1].rstrip("_").split("_"):
                    used.setdefault(case_id.upper(), []).append(f"{path.relative_to(root)}::{name}")
    return used


def undocumented_cases(faults_text: str, root: Path) -> dict[str, list[str]]:
    """The case ids the test names under `root`/tests use that have no entry in `faults_text`."""
    used = case_ids_used_by_tests(sorted((root / "tests").rglob("test_*.py")), root)
    documented = documented_cases(faults_text)
    return {case_id: tests for case_id, tests in used.items() if case_id not in documented}


def documented_cases(text: str) -> dict[str, str]:
    """Each case heading's id with the text of its entry (up to the next heading)."""
    entries = re.split(r"^#{2,3} ", text, flags=re.MULTILINE)
    return {match[1]: entry for entry in entries if (match := re.match(r"([A-E]\d+) ", entry))}


def missing_tests(text: str, root: Path) -> list[str]:
    """The `file::test` references of `text` that name no test function in `root`."""
    missing: list[str] = []
    defined: dict[str, set[str]] = {}
    for file, name in TEST_REFERENCE.findall(text):
        path = root / file
        if file not in defined:
            defined[file] = defined_tests(path) if path.is_file() else set()
        if name not in defined[file]:
            missing.append(f"{file}::{name}")
    return missing


def test_every_case_id_used_in_a_test_name_has_an_entry() -> None:
    used = case_ids_used_by_tests(sorted(TESTS.rglob("test_*.py")), REPO_ROOT)

    assert used, "no test name carries a case id: the pattern no longer matches the suite's names"
    assert undocumented_cases(FAULTS.read_text(encoding="utf-8"), REPO_ROOT) == {}, "add them to docs/faults.md"


def test_every_test_the_fault_cases_name_exists() -> None:
    assert missing_tests(FAULTS.read_text(encoding="utf-8"), REPO_ROOT) == []


def test_every_case_names_at_least_one_test_and_appears_once() -> None:
    text = FAULTS.read_text(encoding="utf-8")
    headings = CASE_HEADING.findall(text)

    assert len(headings) == len(set(headings)), "a case id has two entries"
    for case_id, entry in documented_cases(text).items():
        assert TEST_REFERENCE.search(entry), f"{case_id} names no test that proves it"


def test_a_case_without_its_entry_is_reported() -> None:
    # Given docs/faults.md without its B4 entry
    text = FAULTS.read_text(encoding="utf-8").replace("### B4 ", "### Former B4: ")

    # When the suite's case ids are checked against it
    undocumented = undocumented_cases(text, REPO_ROOT)

    # Then B4 is reported with the tests that use it
    assert list(undocumented) == ["B4"]
    assert undocumented["B4"] == [
        "tests/functional/test_handler.py::test_b4_database_lost_mid_batch_keeps_earlier_rows_and_retry_adds_no_duplicates"
    ]


def test_a_new_case_id_in_a_test_name_is_reported(tmp_path: Path) -> None:
    # Given a test file whose test uses a documented id and one that has no entry
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_new.py").write_text("def test_a1_c99_both():\n    pass\n", encoding="utf-8")

    undocumented = undocumented_cases(FAULTS.read_text(encoding="utf-8"), tmp_path)

    assert undocumented == {"C99": ["tests/test_new.py::test_a1_c99_both"]}


def test_a_renamed_or_removed_test_is_reported() -> None:
    text = (
        "`tests/functional/test_handler.py::test_a1_test_event_raw_and_sns_wrapped_is_acknowledged`\n"
        "`tests/functional/test_handler.py::test_a1_renamed`\n"
        "`tests/unit/test_removed.py::test_anything`\n"
    )

    assert missing_tests(text, REPO_ROOT) == [
        "tests/functional/test_handler.py::test_a1_renamed",
        "tests/unit/test_removed.py::test_anything",
    ]
