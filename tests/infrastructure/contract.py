"""The contract between the synthesized stack and the rendered Kubernetes manifests, as one pure check.

`contract_problems` takes both sides as plain data and returns every disagreement as a sentence, so the
tests can run it on the real pair (no problem) and on pairs where one side alone was changed (a problem).
"""

from __future__ import annotations

import json
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
STS_AUDIENCE = "sts.amazonaws.com"
# What the worker needs after its batch deadline: delete the successes and release the rest.
RELEASE_SECONDS = 10
DATABASE_PARAMETER = "DatabaseCredentialsArn"
QUEUE_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"}
OBJECT_ACTIONS = {"s3:GetObject", "s3:GetObjectVersion"}


@dataclass(frozen=True)
class KedaOperator:
    """Who KEDA's operator is: its service account (installed with KEDA, outside these manifests) and, when
    given as `kedaOperatorRoleArn`, the IAM role it already runs as."""

    namespace: str
    service_account: str
    role_arn: str | None


@dataclass(frozen=True)
class Sides:
    template: dict[str, Any]
    manifests: list[dict[str, Any]]
    params: dict[str, str]
    expected_worker_environment: dict[str, str]
    image_environment: dict[str, str]
    """What the image's Dockerfile sets (ENV): the workers' environment under the ConfigMap's."""
    keda_operator: KedaOperator

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
        *_database_problems(sides),
        *_keda_problems(sides),
    ]


def one(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = [document for document in manifests if document["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def config_map(manifests: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = one(manifests, "ConfigMap")["data"]
    return data


def worker_environment(sides: Sides) -> dict[str, str]:
    """The environment a worker container sees: the image's ENV, overridden by the ConfigMap (envFrom)."""
    return {**sides.image_environment, **config_map(sides.manifests)}


def database_secret(template: Template) -> str:
    """The database secret the stack hands both runtimes (its `databaseSecretArn` output), flattened."""
    return flatten(outputs(template)[PARAMS_FROM_OUTPUTS["DATABASE_SECRET_ARN"]]["Value"])


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
    environment = worker_environment(sides)
    for name, expected in sides.expected_worker_environment.items():
        if name == "FILEQUEUE_DATABASE_SECRET_ARN":
            continue  # a reference in the template; compared in the permission check
        if environment.get(name) != expected:
            source = "ConfigMap" if name in data or name not in sides.image_environment else "image"
            problems.append(f"the {source} has {name}={environment.get(name)!r}, the stack granted for {expected!r}")
    return problems


def _permission_problems(sides: Sides) -> list[str]:
    template = sides.stack()
    problems = _runtime_permission_problems(
        "worker", worker_environment(sides), _statements(template, _worker_role(template)), template
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
    secret = database_secret(template)
    if settings.database_secret_arn:
        required.append(("secretsmanager:GetSecretValue", secret))
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
    # A parameter reaches the workers as its value (params.env), a secret the stack creates as its ARN; the
    # Lambda functions get the reference itself.
    expected_secret: str | None = secret
    if runtime == "worker" and secret == f"<{DATABASE_PARAMETER}>":
        expected_secret = template.find_parameters(DATABASE_PARAMETER)[DATABASE_PARAMETER].get("Default")
    if settings.database_secret_arn != expected_secret:
        problems.append(
            f"the {runtime} reads secret {settings.database_secret_arn}, the stack grants {expected_secret}"
        )
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
    data = worker_environment(sides)
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


def _database_problems(sides: Sides) -> list[str]:
    """With a database the stack creates, the secret both runtimes read connects through its RDS Proxy."""
    stack = sides.stack()
    proxies = list(resources(stack, "AWS::RDS::DBProxy"))
    if not proxies:
        return []
    (proxy,) = proxies
    secret = database_secret(stack)
    secrets = resources(stack, "AWS::SecretsManager::Secret")
    secret_id = secret.strip("<>")
    if secret_id not in secrets:
        return [f"the runtimes read {secret}, which is no secret of the stack"]
    connection = json.loads(flatten(secrets[secret_id]["Properties"]["SecretString"]))
    if connection.get("host") != f"<{proxy}.Endpoint>":
        return [f"the runtimes' secret {secret} connects to {connection.get('host')}, not to the proxy {proxy}"]
    return []


def _keda_problems(sides: Sides) -> list[str]:
    """The TriggerAuthentication names the stack's scaler role, and that role trusts KEDA as `provider: aws` asks.

    KEDA's operator assumes the `roleArn` with its own service account token (AssumeRoleWithWebIdentity) and,
    when that is refused, with the credentials it already has (AssumeRole): the role must trust the operator's
    token, and the operator's own role only when `kedaOperatorRoleArn` names it.
    """
    authentication = one(sides.manifests, "TriggerAuthentication")
    identity = authentication["spec"].get("podIdentity", {})
    problems = []
    if identity.get("provider") != "aws" or "identityOwner" in identity:
        problems.append(f"KEDA authenticates with {identity}, not with provider aws and a role of its own")
    if identity.get("roleArn") != sides.params.get("KEDA_ROLE_ARN"):
        problems.append(f"KEDA assumes {identity.get('roleArn')}, params.env names {sides.params.get('KEDA_ROLE_ARN')}")
    trigger = one(sides.manifests, "ScaledObject")["spec"]["triggers"][0]
    if trigger.get("authenticationRef", {}).get("name") != authentication["metadata"]["name"]:
        problems.append("the ScaledObject does not use the TriggerAuthentication")
    stack = sides.stack()
    value = outputs(stack).get(PARAMS_FROM_OUTPUTS["KEDA_ROLE_ARN"], {}).get("Value")
    roles = resources(stack, "AWS::IAM::Role")
    if not (isinstance(value, dict) and value.get("Fn::GetAtt", [None])[0] in roles):
        return [*problems, f"params.env KEDA_ROLE_ARN comes from {value}, not a role of the stack"]
    trust = roles[value["Fn::GetAtt"][0]]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    operator = sides.keda_operator
    expected = {("token", f"system:serviceaccount:{operator.namespace}:{operator.service_account}", STS_AUDIENCE)}
    if operator.role_arn is not None:
        expected.add(("role", operator.role_arn, "sts:AssumeRole"))
    trusted = {_trusted_identity(statement) for statement in trust}
    if trusted != expected:
        problems.append(f"KEDA's scaler role trusts {sorted(trusted)}, KEDA's operator comes as {sorted(expected)}")
    return problems


def _trusted_identity(statement: dict[str, Any]) -> tuple[str, str, str]:
    """A trust statement as (kind, who, how): a service account's token for an audience, or a role's AssumeRole."""
    if statement.get("Effect") != "Allow":
        return ("deny", json.dumps(statement, sort_keys=True), "")
    principal = statement.get("Principal", {})
    if statement.get("Action") == "sts:AssumeRoleWithWebIdentity" and "Federated" in principal:
        conditions = statement.get("Condition", {}).get("StringEquals", {})
        subject = next((value for key, value in conditions.items() if key.endswith(":sub")), "any subject")
        audience = next((value for key, value in conditions.items() if key.endswith(":aud")), "any audience")
        return ("token", subject, audience)
    if "AWS" in principal:
        return ("role", flatten(principal["AWS"]), str(statement.get("Action")))
    return ("other", json.dumps(statement, sort_keys=True), "")


def _mebibytes(quantity: str) -> int:
    units = {"Gi": 1024, "Mi": 1}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity.removesuffix(suffix)) * factor
    raise AssertionError(f"unsupported memory quantity {quantity}")
