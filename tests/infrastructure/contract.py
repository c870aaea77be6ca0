"""The contract between the synthesized stack and the rendered Kubernetes manifests, as one pure check.

`contract_problems` takes both sides as plain data and returns every disagreement as a sentence, so the
tests can run it on the real pair (no problem) and on pairs where one side alone was changed (a problem).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk.assertions import Template

from cdk.k8s_params import PARAMS_FROM_OUTPUTS
from handlers.errors import ConfigError
from handlers.settings import Settings, env_names
from handlers.worker.startup import check_limits
from tests.infrastructure.template_queries import (
    as_list,
    flatten,
    logical_id_by_prefix,
    outputs,
    resources,
    statements_of_role,
)

RUNTIME_ENV_PREFIXES = ("AWS_", "POWERTOOLS_")
# What the worker needs after its batch deadline: delete the successes and release the rest.
RELEASE_SECONDS = 10
DATABASE_PARAMETER = "DatabaseCredentialsArn"
QUEUE_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"}
OBJECT_ACTIONS = {"s3:GetObject", "s3:GetObjectVersion"}


@dataclass(frozen=True)
class Sides:
    template: dict[str, Any]
    manifests: list[dict[str, Any]]
    params: dict[str, str]
    expected_worker_environment: dict[str, str]

    def stack(self) -> Template:
        """The template document as a queryable Template; built per call, as the tests change the document."""
        return Template.from_json(self.template)


def contract_problems(sides: Sides) -> list[str]:
    return [
        *_identity_problems(sides),
        *_environment_problems(sides),
        *_permission_problems(sides),
        *_output_problems(sides),
        *_migration_job_problems(sides),
        *_budget_problems(sides),
    ]


def one(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = [document for document in manifests if document["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def config_map(manifests: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = one(manifests, "ConfigMap")["data"]
    return data


def _pod(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    pod: dict[str, Any] = one(manifests, kind)["spec"]["template"]["spec"]
    return pod


def _worker_role(template: Template) -> str:
    return logical_id_by_prefix(template, "AWS::IAM::Role", "IrsaWorkerRole")


def _identity_problems(sides: Sides) -> list[str]:
    account = one(sides.manifests, "ServiceAccount")["metadata"]
    subject = f"system:serviceaccount:{account.get('namespace')}:{account['name']}"
    stack = sides.stack()
    trust = resources(stack, "AWS::IAM::Role")[_worker_role(stack)]["Properties"]["AssumeRolePolicyDocument"]
    trusted = [
        value
        for statement in trust["Statement"]
        for key, value in statement.get("Condition", {}).get("StringEquals", {}).items()
        if key.endswith(":sub")
    ]
    problems = [] if trusted == [subject] else [f"the worker role trusts {trusted}, the manifests create {subject}"]
    for kind in ("Deployment", "Job"):
        used = _pod(sides.manifests, kind).get("serviceAccountName")
        if used != account["name"]:
            problems.append(f"the {kind} runs as service account {used!r}, not {account['name']!r}")
    return problems


def _environment_problems(sides: Sides) -> list[str]:
    data = config_map(sides.manifests)
    known = set(env_names())
    problems = [
        f"the ConfigMap sets {name}, which is no setting"
        for name in sorted(data)
        if name not in known and not name.startswith(RUNTIME_ENV_PREFIXES)
    ]
    for function in resources(sides.stack(), "AWS::Lambda::Function").values():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        problems.extend(
            f"the Lambda function sets {name}, which is no setting"
            for name in sorted(variables)
            if name not in known and not name.startswith(RUNTIME_ENV_PREFIXES)
        )
    for name, expected in sides.expected_worker_environment.items():
        if name == "FILEQUEUE_DATABASE_SECRET_ARN":
            continue  # a parameter in the template; compared with its default below
        if data.get(name) != expected:
            problems.append(f"the ConfigMap has {name}={data.get(name)!r}, the stack granted for {expected!r}")
    return problems


def _permission_problems(sides: Sides) -> list[str]:
    template = sides.stack()
    problems = _runtime_permission_problems(
        "worker", config_map(sides.manifests), _statements(template, _worker_role(template)), template
    )
    for role_id in resources(template, "AWS::IAM::Role"):
        if role_id.startswith("LambdaConsumerRole"):
            function_id = logical_id_by_prefix(template, "AWS::Lambda::Function", "LambdaConsumerFunction")
            function = resources(template, "AWS::Lambda::Function")[function_id]
            literal = {
                name: value if isinstance(value, str) else flatten(value)
                for name, value in function["Properties"]["Environment"]["Variables"].items()
            }
            problems.extend(_runtime_permission_problems("Lambda", literal, _statements(template, role_id), template))
    return problems


def _runtime_permission_problems(
    runtime: str, environment: dict[str, str], statements: list[dict[str, Any]], template: Template
) -> list[str]:
    """Each setting that makes the handler call AWS has its permission on that runtime's role."""
    try:
        settings = Settings.from_env(environment)
    except ConfigError as exc:
        return [f"the {runtime} settings are invalid: {exc}"]
    grants = {
        (action, flatten(resource))
        for statement in statements
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }
    queue = f"<{logical_id_by_prefix(template, 'AWS::SQS::Queue', 'IngestQueue')}.Arn>"
    bucket = f"<{logical_id_by_prefix(template, 'AWS::S3::Bucket', 'IngestUploadsBucket')}.Arn>"
    required = [(action, queue) for action in sorted(QUEUE_ACTIONS)] + [("s3:ListBucket", bucket)]
    if settings.database_secret_arn:
        required.append(("secretsmanager:GetSecretValue", f"<{DATABASE_PARAMETER}>"))
    problems = [
        f"the {runtime} role lacks {action} on {resource}"
        for action, resource in required
        if (action, resource) not in grants
    ]
    problems.extend(
        f"the {runtime} role lacks {action} on the uploads"
        for action in sorted(OBJECT_ACTIONS)
        if not any(granted == action and resource.startswith(f"{bucket}/") for granted, resource in grants)
    )
    if settings.embedder == "bedrock":
        model = f"foundation-model/{settings.resolved_embedding_model}"
        if not any(action == "bedrock:InvokeModel" and resource.endswith(model) for action, resource in grants):
            problems.append(f"the {runtime} role may not invoke {model}")
    secret_default = template.find_parameters(DATABASE_PARAMETER)[DATABASE_PARAMETER].get("Default")
    if runtime == "worker" and settings.database_secret_arn != secret_default:
        problems.append(f"the worker reads secret {settings.database_secret_arn}, the stack grants {secret_default}")
    return problems


def _statements(template: Template, role_id: str) -> list[dict[str, Any]]:
    """Every statement that applies to a role: inline, attached policies and its managed policies."""
    statements = statements_of_role(template, role_id)
    managed = resources(template, "AWS::IAM::ManagedPolicy")
    for arn in resources(template, "AWS::IAM::Role")[role_id]["Properties"].get("ManagedPolicyArns", []):
        if isinstance(arn, dict) and arn.get("Ref") in managed:
            statements.extend(managed[arn["Ref"]]["Properties"]["PolicyDocument"]["Statement"])
    return statements


def _output_problems(sides: Sides) -> list[str]:
    stack = sides.stack()
    stack_outputs = outputs(stack)
    problems = [
        f"params.env has {name}, which no stack output feeds"
        for name in sides.params
        if name not in PARAMS_FROM_OUTPUTS
    ]
    problems.extend(
        f"params.env {name} comes from output {output}, which the stack does not have"
        for name, output in PARAMS_FROM_OUTPUTS.items()
        if output not in stack_outputs
    )
    problems.extend(f"params.env lacks {name}" for name in PARAMS_FROM_OUTPUTS if name not in sides.params)
    queue_id = logical_id_by_prefix(stack, "AWS::SQS::Queue", "IngestQueue")
    if stack_outputs.get(PARAMS_FROM_OUTPUTS["QUEUE_URL"], {}).get("Value") != {"Ref": queue_id}:
        problems.append("the queue URL output is not the queue's URL")
    if stack_outputs.get(PARAMS_FROM_OUTPUTS["AWS_REGION"], {}).get("Value") != {"Ref": "AWS::Region"}:
        problems.append("the region output is not the stack's region")
    data = config_map(sides.manifests)
    trigger = one(sides.manifests, "ScaledObject")["spec"]["triggers"][0]["metadata"]
    if not data.get("FILEQUEUE_QUEUE_URL") == trigger.get("queueURL") == sides.params.get("QUEUE_URL"):
        problems.append("the worker, KEDA and params.env name different queues")
    if not data.get("AWS_REGION") == trigger.get("awsRegion") == sides.params.get("AWS_REGION"):
        problems.append("the worker, KEDA and params.env name different regions")
    return problems


def _migration_job_problems(sides: Sides) -> list[str]:
    worker = _pod(sides.manifests, "Deployment")
    job = _pod(sides.manifests, "Job")
    problems = []
    if [c["image"] for c in job["containers"]] != [c["image"] for c in worker["containers"]]:
        problems.append("the migration Job runs another image than the workers")
    if [c.get("envFrom") for c in job["containers"]] != [c.get("envFrom") for c in worker["containers"]]:
        problems.append("the migration Job reads other settings than the workers")
    if job["containers"][0].get("command") != ["filequeue", "migrate"]:
        problems.append("the migration Job does not run `filequeue migrate`")
    return problems


def _budget_problems(sides: Sides) -> list[str]:
    """The worker's own start-up checks on the ConfigMap and the container's memory limit, and the pod's grace."""
    data = config_map(sides.manifests)
    worker = _pod(sides.manifests, "Deployment")
    limit = worker["containers"][0]["resources"]["limits"]["memory"]
    problems: list[str] = []
    try:
        settings = Settings.from_env({**data, "FILEQUEUE_MEMORY_LIMIT_MB": str(_mebibytes(limit))})
        check_limits(settings, settings.worker_processes or 1)
    except ConfigError as exc:
        return [f"the workers would refuse to start: {exc}"]
    needed = settings.worker_wait_time_seconds + settings.worker_shutdown_grace_seconds + RELEASE_SECONDS
    if worker["terminationGracePeriodSeconds"] < needed:
        problems.append(
            f"terminationGracePeriodSeconds {worker['terminationGracePeriodSeconds']} < long poll + batch "
            f"deadline + release time ({needed})"
        )
    return problems


def _mebibytes(quantity: str) -> int:
    units = {"Gi": 1024, "Mi": 1}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity.removesuffix(suffix)) * factor
    raise AssertionError(f"unsupported memory quantity {quantity}")
