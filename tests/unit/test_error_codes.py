"""The catalogue of error codes: docs/semantics.md's table of permanent codes, and the codes the modules raise."""

from __future__ import annotations

import ast

from handlers.errors import PERMANENT_CODES, ErrorCode, FileQueueError
from tests.paths import REPO_ROOT

README = REPO_ROOT / "docs" / "semantics.md"
SEMANTICS = REPO_ROOT / "docs" / "semantics.md"
TABLE_HEADER = "| code | meaning | what you can do |"


def permanent_code_rows() -> list[list[str]]:
    """The cells of each row of docs/semantics.md's table of permanent codes, the code without its backticks."""
    lines = README.read_text(encoding="utf-8").splitlines()
    assert lines.count(TABLE_HEADER) == 1, f"docs/semantics.md needs exactly one table headed {TABLE_HEADER!r}"
    rows: list[list[str]] = []
    for line in lines[lines.index(TABLE_HEADER) + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows.append([cells[0].strip("`"), *cells[1:]])
    return rows


def test_the_readme_table_lists_exactly_the_permanent_codes() -> None:
    codes = [row[0] for row in permanent_code_rows()]

    assert sorted(codes) == sorted(PERMANENT_CODES)
    assert len(codes) == len(set(codes)), "a code is listed twice"


def test_every_row_says_what_the_code_means_and_what_the_user_can_do() -> None:
    for row in permanent_code_rows():
        assert len(row) == 3, f"{row[0]}: expected code | meaning | what you can do, got {row}"
        code, meaning, action = row
        assert meaning, f"{code} has no meaning"
        assert action, f"{code} says nothing the user can do"


def test_the_failure_taxonomy_explains_every_code() -> None:
    text = SEMANTICS.read_text(encoding="utf-8")

    unexplained = [code.value for code in ErrorCode if f"`{code.value}`" not in text]

    assert unexplained == [], "docs/semantics.md's failure taxonomy must say what these codes mean"


def _literal_codes() -> list[tuple[str, int, str]]:
    """(file, line, code) of every string literal passed as `code=` or assigned to a class's `code`."""
    found: list[tuple[str, int, str]] = []
    for path in sorted((REPO_ROOT / "handlers").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            values: list[ast.expr] = []
            if isinstance(node, ast.keyword) and node.arg == "code":
                values.append(node.value)
            elif isinstance(node, ast.ClassDef):
                values.extend(
                    statement.value
                    for statement in node.body
                    if isinstance(statement, ast.Assign | ast.AnnAssign)
                    and statement.value is not None
                    and any(isinstance(target, ast.Name) and target.id == "code" for target in _targets(statement))
                )
            found.extend(
                (str(path.relative_to(REPO_ROOT)), value.lineno, value.value)
                for value in values
                if isinstance(value, ast.Constant) and isinstance(value.value, str)
            )
    return found


def _targets(statement: ast.Assign | ast.AnnAssign) -> list[ast.expr]:
    return statement.targets if isinstance(statement, ast.Assign) else [statement.target]


def test_every_code_written_as_a_string_is_in_the_catalogue() -> None:
    catalogued = {code.value for code in ErrorCode}

    unknown = [f"{file}:{line}: {code!r}" for file, line, code in _literal_codes() if code not in catalogued]

    assert unknown == [], "add these codes to ErrorCode (or use its members)"


def test_every_error_class_defaults_to_a_catalogued_code() -> None:
    classes: list[type[FileQueueError]] = [FileQueueError, *FileQueueError.__subclasses__()]

    assert {type(error_class.code) for error_class in classes} == {ErrorCode}
