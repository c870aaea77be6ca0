"""Small readers over a synthesized CloudFormation template (a plain dict)."""

from __future__ import annotations

from typing import Any

IAM_POLICY_TYPES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def only_resource(template: dict[str, Any], resource_type: str) -> tuple[str, dict[str, Any]]:
    found = resources(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.items()))


def logical_id_by_prefix(template: dict[str, Any], resource_type: str, prefix: str) -> str:
    matches = [logical_id for logical_id in resources(template, resource_type) if logical_id.startswith(prefix)]
    assert len(matches) == 1, f"expected one {resource_type} named {prefix}*, found {matches}"
    return matches[0]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def identity_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of every identity policy: policies, managed policies and roles' inline policies."""
    statements: list[dict[str, Any]] = []
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] in IAM_POLICY_TYPES:
            statements.extend(properties["PolicyDocument"]["Statement"])
        elif resource["Type"] == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                statements.extend(policy["PolicyDocument"]["Statement"])
    return statements


def statements_of_role(template: dict[str, Any], role_logical_id: str) -> list[dict[str, Any]]:
    """Inline statements of one role plus those of the AWS::IAM::Policy resources attached to it."""
    role = template["Resources"][role_logical_id]
    statements = [
        statement
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in policy["Properties"].get("Roles", []):
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


def env_of(function: dict[str, Any]) -> dict[str, Any]:
    return function["Properties"]["Environment"]["Variables"]  # type: ignore[no-any-return]
