"""cfn-lint and checkov on the synthesized templates: every finding fixed or acknowledged with its reason.

cfn-lint comes with the dev extra; checkov's dependencies clash with the project's, so `.ci/test` installs
it into its own virtual environment (`.venv-checkov`) and the tests call it as a program.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cdk.acknowledge import SCANNER_ACKNOWLEDGMENTS
from tests.infrastructure.conftest import SCANNED_VARIANTS
from tests.paths import REPO_ROOT

if TYPE_CHECKING:
    from tests.infrastructure.conftest import Synthesized

CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
MIN_REASON_LENGTH = 40


def _template_file(synth: Synthesized) -> Path:
    return synth.assembly_dir / f"{synth.stack.stack_name}.template.json"


def cfn_lint(template: Path) -> subprocess.CompletedProcess[str]:
    cfn_lint_program = Path(sys.executable).parent / "cfn-lint"
    return subprocess.run(
        [str(cfn_lint_program), "--format", "parseable", str(template)], capture_output=True, text=True, check=False
    )


def checkov(template: Path) -> list[dict[str, Any]]:
    assert CHECKOV.exists(), "checkov is missing: .ci/test installs it into .venv-checkov"
    result = subprocess.run(
        [str(CHECKOV), "-f", str(template), "--framework", "cloudformation", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    failed: list[dict[str, Any]] = report["results"]["failed_checks"]
    return failed


@pytest.mark.parametrize("variant", SCANNED_VARIANTS)
def test_cfn_lint_finds_nothing_unacknowledged(variant: str, request: pytest.FixtureRequest) -> None:
    result = cfn_lint(_template_file(request.getfixturevalue(variant)))

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variant", SCANNED_VARIANTS)
def test_checkov_finds_nothing_unacknowledged(variant: str, request: pytest.FixtureRequest) -> None:
    failed = checkov(_template_file(request.getfixturevalue(variant)))

    assert [(check["check_id"], check["resource"]) for check in failed] == []


def test_without_the_acknowledgments_both_tools_report_findings(full_synth: Synthesized, tmp_path: Path) -> None:
    """Control: the tools run for real, so the tests above can fail."""
    template = copy.deepcopy(full_synth.template_json)
    for resource in template["Resources"].values():
        resource.get("Metadata", {}).pop("cfn-lint", None)
        resource.get("Metadata", {}).pop("checkov", None)
    stripped = tmp_path / "stripped.template.json"
    stripped.write_text(json.dumps(template))

    assert "W3005" in cfn_lint(stripped).stdout
    assert {"CKV_AWS_27", "CKV_AWS_116"} <= {check["check_id"] for check in checkov(stripped)}


def test_every_scanner_acknowledgment_has_a_reason_and_still_matches_a_resource(
    request: pytest.FixtureRequest,
) -> None:
    synths: list[Synthesized] = [request.getfixturevalue(variant) for variant in SCANNED_VARIANTS]
    paths = {construct.node.path.partition("/")[2] for synth in synths for construct in synth.stack.node.find_all()}
    for entry in SCANNER_ACKNOWLEDGMENTS:
        assert entry.tool in ("cfn-lint", "checkov")
        assert len(entry.reason) >= MIN_REASON_LENGTH, entry
        assert any(fnmatch(path, entry.path) for path in paths), f"stale acknowledgment {entry}"
