"""The stack and the manifests checked against each other: identity, settings, permissions, outputs, budgets.

Each side is also tested alone elsewhere; these tests catch what those cannot, a name or value that one
side changes and the other does not. The mutation tests prove the check fails when either side alone moves.
"""

from __future__ import annotations

import copy
import io
import json
import shutil
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from cdk.image_asset import IMAGE_MODEL_PATH
from cdk.k8s_params import PARAMS_FROM_OUTPUTS, main, params_env
from cdk.runtime_environment import worker_environment
from tests.infrastructure.conftest import KEDA_OPERATOR_ROLE_ARN
from tests.infrastructure.contract import KedaOperator, Sides, config_map, contract_problems, one
from tests.infrastructure.manifests import K8S, image_environment, params, read_params, render, rendered
from tests.infrastructure.template_queries import flatten, logical_id_by_prefix, outputs, resources

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.infrastructure.conftest import Synthesized


def sides_of(synth: Synthesized) -> Sides:
    """The synthesized stack and the shipped manifests with the shipped params.env."""
    config = synth.stack.config
    return Sides(
        template=synth.template_json,
        manifests=copy.deepcopy(list(rendered())),
        params=params(),
        expected_worker_environment=worker_environment(config, "the stack's database secret"),
        image_environment=image_environment(),
        keda_operator=KedaOperator(config.keda_namespace, config.keda_service_account, config.keda_operator_role_arn),
    )


def sides_deployed(synth: Synthesized, tmp_path: Path) -> Sides:
    """The manifests as a deployment of this stack renders them: params.env written from the stack's outputs
    by cdk.k8s_params (each output's value as its reference, `<LogicalId.Attribute>`; a parameter as its default,
    the value CloudFormation deploys with)."""
    defaults = {
        f"<{name}>": parameter["Default"]
        for name, parameter in synth.template.find_parameters("*").items()
        if "Default" in parameter
    }
    values = {}
    for key, output in outputs(synth.template).items():
        value = flatten(output["Value"])
        values[key] = defaults.get(value, value)
    overlay = tmp_path / "k8s"
    shutil.copytree(K8S, overlay)
    (overlay / "params.env").write_text(params_env(values))
    return replace(sides_of(synth), manifests=render(overlay), params=read_params(overlay / "params.env"))


def test_the_stack_for_eks_and_the_shipped_manifests_agree(eks_synth: Synthesized) -> None:
    assert contract_problems(sides_of(eks_synth)) == []


def test_a_stack_running_both_runtimes_agrees_with_the_manifests_on_its_lambda_side_too(
    full_synth: Synthesized,
) -> None:
    # The full variant reads another prefix with another secret and embedder: only those may disagree.
    problems = contract_problems(sides_of(full_synth))

    assert not [problem for problem in problems if "Lambda" in problem]


def test_with_an_aurora_database_the_pods_read_the_secret_the_lambda_reads_and_reach_the_proxy(
    aurora_synth: Synthesized, tmp_path: Path
) -> None:
    sides = sides_deployed(aurora_synth, tmp_path)
    template = aurora_synth.template
    secret_id = logical_id_by_prefix(template, "AWS::SecretsManager::Secret", "DatabaseConnectionSecret")
    function = resources(template, "AWS::Lambda::Function")[
        logical_id_by_prefix(template, "AWS::Lambda::Function", "LambdaConsumerFunction")
    ]

    assert contract_problems(sides) == []
    assert config_map(sides.manifests)["FILEQUEUE_DATABASE_SECRET_ARN"] == f"<{secret_id}>"
    assert function["Properties"]["Environment"]["Variables"]["FILEQUEUE_DATABASE_SECRET_ARN"] == {"Ref": secret_id}


def test_keda_assumes_the_scaler_role_of_the_stack_which_trusts_the_operators_token_and_role(
    aurora_synth: Synthesized, tmp_path: Path
) -> None:
    sides = sides_deployed(aurora_synth, tmp_path)
    role_id = logical_id_by_prefix(aurora_synth.template, "AWS::IAM::Role", "IrsaKedaOperatorRole")

    assert one(sides.manifests, "TriggerAuthentication")["spec"]["podIdentity"] == {
        "provider": "aws",
        "roleArn": f"<{role_id}.Arn>",
    }
    assert sides.keda_operator.role_arn == KEDA_OPERATOR_ROLE_ARN
    assert contract_problems(sides) == []


def test_with_a_local_model_the_workers_take_the_model_path_from_the_image(
    local_synth: Synthesized, tmp_path: Path
) -> None:
    sides = sides_deployed(local_synth, tmp_path)

    assert sides.expected_worker_environment["FILEQUEUE_EMBEDDING_MODEL_PATH"] == IMAGE_MODEL_PATH
    assert "FILEQUEUE_EMBEDDING_MODEL_PATH" not in config_map(sides.manifests)
    assert config_map(sides.manifests)["FILEQUEUE_EMBEDDER"] == "local"
    assert contract_problems(sides) == []
    # Control: an image without the path would leave the workers without their model.
    without = replace(sides, image_environment={})
    assert any("FILEQUEUE_EMBEDDING_MODEL_PATH=None" in problem for problem in contract_problems(without))


def _point_the_secret_past_the_proxy(sides: Sides) -> None:
    secret_id = logical_id_by_prefix(sides.stack(), "AWS::SecretsManager::Secret", "DatabaseConnectionSecret")
    cluster_id = logical_id_by_prefix(sides.stack(), "AWS::RDS::DBCluster", "DatabaseCluster")
    secret = sides.template["Resources"][secret_id]["Properties"]["SecretString"]["Fn::Join"][1]
    secret[1] = {"Fn::GetAtt": [cluster_id, "Endpoint.Address"]}


def _give_the_pods_the_cluster_secret(sides: Sides) -> None:
    cluster_secret = logical_id_by_prefix(sides.stack(), "AWS::SecretsManager::Secret", "DatabaseClusterSecret")
    config_map(sides.manifests)["FILEQUEUE_DATABASE_SECRET_ARN"] = f"<{cluster_secret}>"


def _drop_the_operator_role_trust(sides: Sides) -> None:
    role_id = logical_id_by_prefix(sides.stack(), "AWS::IAM::Role", "IrsaKedaOperatorRole")
    document = sides.template["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]
    document["Statement"] = [s for s in document["Statement"] if "AWS" not in s["Principal"]]


def _let_keda_use_the_workload_identity(sides: Sides) -> None:
    one(sides.manifests, "TriggerAuthentication")["spec"]["podIdentity"] = {
        "provider": "aws",
        "identityOwner": "workload",
    }


def _name_another_keda_role(sides: Sides) -> None:
    one(sides.manifests, "TriggerAuthentication")["spec"]["podIdentity"]["roleArn"] = "arn:aws:iam::1:role/other"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_point_the_secret_past_the_proxy, "not to the proxy"),
        (_give_the_pods_the_cluster_secret, "the worker reads secret <DatabaseClusterSecret"),
        (_drop_the_operator_role_trust, "KEDA's scaler role trusts [('token'"),
        (_let_keda_use_the_workload_identity, "not with provider aws and a role of its own"),
        (_name_another_keda_role, "KEDA assumes arn:aws:iam::1:role/other"),
    ],
)
def test_the_aurora_contract_fails_when_one_side_alone_changes(
    aurora_synth: Synthesized, tmp_path: Path, mutate: Callable[[Sides], None], expected: str
) -> None:
    sides = sides_deployed(aurora_synth, tmp_path)
    sides = replace(sides, template=copy.deepcopy(sides.template))

    mutate(sides)

    problems = contract_problems(sides)
    assert any(expected in problem for problem in problems), problems


def _rename_service_account(sides: Sides) -> None:
    one(sides.manifests, "ServiceAccount")["metadata"]["name"] = "file-processor"


def _move_namespace(sides: Sides) -> None:
    for document in sides.manifests:
        if document["kind"] == "Namespace":
            document["metadata"]["name"] = "filequeue"
        else:
            document["metadata"]["namespace"] = "filequeue"


def _misspell_a_setting(sides: Sides) -> None:
    data = config_map(sides.manifests)
    data["FILEQUEUE_EMBEDER"] = data.pop("FILEQUEUE_EMBEDDER")


def _switch_the_embedding_model(sides: Sides) -> None:
    config_map(sides.manifests)["FILEQUEUE_EMBEDDING_MODEL"] = "cohere.embed-english-v3"


OTHER_DATABASE_CREDENTIALS = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:other-AbCdEf"


def _read_another_secret(sides: Sides) -> None:
    config_map(sides.manifests)["FILEQUEUE_DATABASE_SECRET_ARN"] = OTHER_DATABASE_CREDENTIALS


def _rename_a_param(sides: Sides) -> None:
    sides.params["SQS_QUEUE_URL"] = sides.params.pop("QUEUE_URL")


def _run_the_job_on_another_image(sides: Sides) -> None:
    one(sides.manifests, "Job")["spec"]["template"]["spec"]["containers"][0]["image"] = "filequeue:latest"


def _lengthen_extraction_past_the_grace(sides: Sides) -> None:
    config_map(sides.manifests)["FILEQUEUE_EXTRACT_TIMEOUT_SECONDS"] = "80"


def _shorten_the_termination_grace(sides: Sides) -> None:
    one(sides.manifests, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 60


def _rename_an_output(sides: Sides) -> None:
    outputs = sides.template["Outputs"]
    outputs["fileProcessorRoleArn"] = outputs.pop("workerRoleArn")


def _trust_another_service_account(sides: Sides) -> None:
    role_id = logical_id_by_prefix(sides.stack(), "AWS::IAM::Role", "IrsaWorkerRole")
    (statement,) = sides.template["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    conditions = statement["Condition"]["StringEquals"]
    for key in conditions:
        if key.endswith(":sub"):
            conditions[key] = "system:serviceaccount:file-queue:file-processor"


def _trust_keda_from_another_service_account(sides: Sides) -> None:
    role_id = logical_id_by_prefix(sides.stack(), "AWS::IAM::Role", "IrsaKedaOperatorRole")
    (statement,) = sides.template["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    conditions = statement["Condition"]["StringEquals"]
    for key in conditions:
        if key.endswith(":sub"):
            conditions[key] = "system:serviceaccount:keda:keda-operator-other"


def _drop_a_worker_grant(sid: str) -> Callable[[Sides], None]:
    def mutate(sides: Sides) -> None:
        for policy_id in resources(sides.stack(), "AWS::IAM::Policy"):
            document = sides.template["Resources"][policy_id]["Properties"]["PolicyDocument"]
            document["Statement"] = [s for s in document["Statement"] if s.get("Sid") != sid]

    return mutate


def _drop_list_bucket(sides: Sides) -> None:
    for policy_id in resources(sides.stack(), "AWS::IAM::ManagedPolicy"):
        document = sides.template["Resources"][policy_id]["Properties"]["PolicyDocument"]
        document["Statement"] = [s for s in document["Statement"] if s.get("Sid") != "ListUploads"]


def _change_the_worker_budget_in_the_stack(sides: Sides) -> None:
    sides.expected_worker_environment["FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS"] = "100"


@pytest.mark.parametrize(
    ("side", "mutate", "expected"),
    [
        ("manifests", _rename_service_account, "system:serviceaccount:file-queue:file-processor"),
        ("manifests", _move_namespace, "system:serviceaccount:filequeue:filequeue-worker"),
        ("manifests", _misspell_a_setting, "FILEQUEUE_EMBEDER, which is no setting"),
        ("manifests", _switch_the_embedding_model, "may not invoke foundation-model/cohere.embed-english-v3"),
        ("manifests", _read_another_secret, "reads secret arn:aws:secretsmanager:eu-west-1:123456789012:secret:other"),
        ("manifests", _rename_a_param, "params.env has SQS_QUEUE_URL"),
        ("manifests", _run_the_job_on_another_image, "another image"),
        ("manifests", _lengthen_extraction_past_the_grace, "FILEQUEUE_EXTRACT_TIMEOUT_SECONDS='80'"),
        ("manifests", _shorten_the_termination_grace, "terminationGracePeriodSeconds 60"),
        ("stack", _rename_an_output, "from output workerRoleArn, which the stack does not have"),
        ("stack", _trust_another_service_account, "trusts ['system:serviceaccount:file-queue:file-processor']"),
        ("stack", _trust_keda_from_another_service_account, "keda-operator-other"),
        ("stack", _drop_a_worker_grant("ReadDatabaseSecret"), "worker role lacks secretsmanager:GetSecretValue"),
        ("stack", _drop_a_worker_grant("InvokeEmbeddingModel"), "worker role may not invoke"),
        ("stack", _drop_list_bucket, "lacks s3:ListBucket"),
        ("stack", _change_the_worker_budget_in_the_stack, "FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS"),
    ],
)
def test_the_contract_fails_when_one_side_alone_changes(
    eks_synth: Synthesized, side: str, mutate: Callable[[Sides], None], expected: str
) -> None:
    # Given the agreeing pair, with one side changed
    sides = sides_of(eks_synth)
    sides = replace(
        sides,
        template=copy.deepcopy(sides.template),
        params=dict(sides.params),
        expected_worker_environment=dict(sides.expected_worker_environment),
    )
    mutate(sides)

    # When the two are checked against each other
    problems = contract_problems(sides)

    # Then the disagreement is named
    assert any(expected in problem for problem in problems), (side, problems)


def test_params_env_is_built_from_the_deployed_stacks_outputs(
    eks_synth: Synthesized, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given describe-stacks output for every output of the synthesized stack
    described = [{"OutputKey": key, "OutputValue": f"value-of-{key}"} for key in outputs(eks_synth.template)]
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(described)))

    # When params.env is generated
    assert main() == 0

    # Then it has exactly the manifests' parameters, each from its output
    generated = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert set(generated) == set(params())
    assert generated == {name: f"value-of-{output}" for name, output in PARAMS_FROM_OUTPUTS.items()}


def test_params_env_from_a_lambda_only_stack_names_the_missing_outputs(
    default_synth: Synthesized, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    described = [{"OutputKey": key, "OutputValue": "x"} for key in outputs(default_synth.template)]
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(described)))

    assert main() == 2
    assert "kedaRoleArn, workerRoleArn" in capsys.readouterr().err


def test_params_env_text_keeps_the_manifests_order() -> None:
    outputs: dict[str, Any] = {output: output.upper() for output in PARAMS_FROM_OUTPUTS.values()}

    assert [line.split("=")[0] for line in params_env(outputs).splitlines()] == list(params())


@pytest.mark.parametrize(
    ("file", "change", "expected"),
    [
        ("serviceaccount.yaml", ("name: filequeue-worker", "name: file-processor"), "file-queue:file-processor"),
        ("kustomization.yaml", ("namespace: file-queue", "namespace: filequeue"), "filequeue:filequeue-worker"),
        (
            "kustomization.yaml",
            # Everywhere: the literal and the replacement that fills it from params.env.
            ("FILEQUEUE_EMBEDDER", "FILEQUEUE_EMBEDER"),
            "FILEQUEUE_EMBEDER, which is no setting",
        ),
    ],
)
def test_the_contract_fails_when_a_manifest_file_alone_changes(
    eks_synth: Synthesized, tmp_path: Path, file: str, change: tuple[str, str], expected: str
) -> None:
    old, new = change
    # Given a copy of the manifests with one name changed throughout one file
    copied = tmp_path / "k8s"
    shutil.copytree(K8S, copied)
    text = (copied / file).read_text()
    assert old in text
    (copied / file).write_text(text.replace(old, new))

    # When the copy is rendered and checked against the unchanged stack
    sides = replace(sides_of(eks_synth), manifests=render(copied))

    # Then the contract names the disagreement
    assert any(expected in problem for problem in contract_problems(sides)), contract_problems(sides)
