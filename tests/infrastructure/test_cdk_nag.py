"""cdk-nag's AWS Solutions pack over the whole app; every accepted finding is justified and documented."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aws_cdk import App, Stack, Validations
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

from tests.paths import REPO_ROOT

if TYPE_CHECKING:
    from tests.infrastructure.conftest import Synthesized

MIN_REASON_LENGTH = 40


def _violations(report: Any) -> list[tuple[str, list[str]]]:
    return [
        (violation.rule_name, [resource.construct_path for resource in violation.violating_resources])
        for violation in report.violations
    ]


def _acknowledgments(synth: Synthesized) -> dict[str, str]:
    """Every acknowledged rule id in the stack's construct tree, with its reason."""
    found: dict[str, str] = {}
    for construct in synth.stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                found.update(entry.data)
    return found


def test_aws_solutions_pack_finds_nothing_unacknowledged(scanned_synth: Synthesized) -> None:
    report = AwsSolutionsChecks().validate_scope(scanned_synth.stack)

    assert _violations(report) == []
    assert report.success


def test_aws_solutions_pack_reports_a_plain_bucket() -> None:
    """Control: the same call does report findings, so the assertion above can fail."""
    stack = Stack(App(), "Control")
    s3.Bucket(stack, "Plain")

    rules = {rule for rule, _ in _violations(AwsSolutionsChecks().validate_scope(stack))}

    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= rules


def test_synthesis_reports_no_violation_of_any_plugin(scanned_synth: Synthesized) -> None:
    """Covers CDK's CloudFormation validation and construct warnings too (warnings do not fail synthesis)."""
    reports = scanned_synth.validation_report["pluginReports"]

    assert [(report["pluginName"], report["violations"]) for report in reports if report["violations"]] == []


def test_every_acknowledgment_gives_a_reason(scanned_synth: Synthesized) -> None:
    acknowledgments = _acknowledgments(scanned_synth)

    assert acknowledgments
    short = {rule: reason for rule, reason in acknowledgments.items() if len(reason) < MIN_REASON_LENGTH}
    assert short == {}


def test_every_acknowledgment_is_listed_in_the_cdk_readme(scanned_synth: Synthesized) -> None:
    readme = (REPO_ROOT / "cdk" / "README.md").read_text()

    undocumented = {rule for rule in _acknowledgments(scanned_synth) if _readme_id(rule) not in readme}
    assert undocumented == set()


def _readme_id(rule: str) -> str:
    """`Annotation::AwsSolutions-IAM5[Resource::<IngestUploadsBucket8D475E55.Arn>/uploads/*]` -> the part before
    the logical id's hash, which the README can name whatever the prefix and the hash."""
    return re.sub(r"[0-9A-F]{8}\.Arn>.*$", "", rule.removeprefix("Annotation::"))
