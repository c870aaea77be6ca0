"""cdk-nag findings this app accepts, each with its reason next to the construct it concerns.

cdk-nag 3 reports through CDK's policy validation, so an accepted finding is a
`Validations.acknowledge`; granular findings use the `RuleId[FindingId]` form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Acknowledgment, Validations

if TYPE_CHECKING:
    from constructs import IConstruct


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Accept one cdk-nag finding on `scope` and everything below it."""
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))
