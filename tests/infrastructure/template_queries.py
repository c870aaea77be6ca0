"""Queries over a synthesized stack through `aws_cdk.assertions.Template`, returning plain values to assert on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_cdk.assertions import Match

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aws_cdk.assertions import Template

IAM_POLICY_TYPES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")


def resources(
    template: Template, resource_type: str, properties: Mapping[str, Any] | None = None
) -> dict[str, Mapping[str, Any]]:
    """Resources of `resource_type` by logical id; with `properties`, only those whose properties contain them."""
    pattern = None if properties is None else {"Properties": Match.object_like(dict(properties))}
    return dict(template.find_resources(resource_type, pattern))


def only_resource(
    template: Template, resource_type: str, properties: Mapping[str, Any] | None = None
) -> tuple[str, Mapping[str, Any]]:
    found = resources(template, resource_type, properties)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.items()))


def logical_id_by_prefix(template: Template, resource_type: str, prefix: str) -> str:
    matches = [logical_id for logical_id in resources(template, resource_type) if logical_id.startswith(prefix)]
    assert len(matches) == 1, f"expected one {resource_type} named {prefix}*, found {matches}"
    return matches[0]


def resource_by_prefix(template: Template, resource_type: str, prefix: str) -> Mapping[str, Any]:
    """The one resource of `resource_type` whose logical id starts with `prefix` (CDK appends a hash)."""
    return resources(template, resource_type)[logical_id_by_prefix(template, resource_type, prefix)]


def properties_by_prefix(template: Template, resource_type: str, prefix: str) -> dict[str, Any]:
    properties: dict[str, Any] = resource_by_prefix(template, resource_type, prefix)["Properties"]
    return properties


def outputs(template: Template) -> dict[str, Mapping[str, Any]]:
    return dict(template.find_outputs("*"))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def identity_statements(template: Template) -> list[dict[str, Any]]:
    """Every statement of every identity policy: policies, managed policies and roles' inline policies."""
    statements: list[dict[str, Any]] = []
    for resource_type in IAM_POLICY_TYPES:
        for policy in resources(template, resource_type).values():
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    for role in resources(template, "AWS::IAM::Role").values():
        for policy in role["Properties"].get("Policies", []):
            statements.extend(policy["PolicyDocument"]["Statement"])
    return statements


def statements_of_role(template: Template, role_logical_id: str) -> list[dict[str, Any]]:
    """Inline statements of one role plus those of the AWS::IAM::Policy resources attached to it."""
    role = resources(template, "AWS::IAM::Role")[role_logical_id]
    statements = [
        statement
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    attached = resources(template, "AWS::IAM::Policy", {"Roles": Match.array_with([{"Ref": role_logical_id}])})
    for policy in attached.values():
        statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def flatten(value: Any) -> str:
    """Render an intrinsic as text: `Fn::GetAtt` -> `<Id.Attr>`, `Ref` -> `<Id>`, `Fn::Join` concatenated."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref":
            return f"<{argument}>"
        if function == "Fn::GetAtt":
            return f"<{'.'.join(argument)}>"
        if function == "Fn::Join":
            separator, parts = argument
            return str(separator).join(flatten(part) for part in parts)
    raise AssertionError(f"cannot flatten {value!r}")


def env_of(function: Mapping[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return variables
