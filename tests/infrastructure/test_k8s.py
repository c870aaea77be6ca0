"""The Kubernetes manifests, rendered by kustomize (kubectl's, from the dev extra), validated against the
Kubernetes JSON schemas (kubernetes-validate) and KEDA's CRD schemas, and checked for their invariants:
security, probes, time budgets on shutdown, scaling and the per-environment parameters."""

from __future__ import annotations

import copy
import json
import re
import shutil
from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from handlers.budget import extract_memory_mb
from handlers.settings import Settings, env_names
from tests.infrastructure import contract
from tests.infrastructure.manifests import K8S, params, render, rendered
from tests.paths import CONTAINER, FIXTURES

KEDA_SCHEMAS = FIXTURES / "schemas" / "keda"
KUBERNETES_VERSION = "1.31"
SPOT_NOTICE_SECONDS = 120
ACK_RESERVE_SECONDS = 2.0  # handlers.worker.poll_loop.LoopOptions.ack_reserve_seconds


def one(kind: str) -> dict[str, Any]:
    return contract.one(list(rendered()), kind)


def worker_env() -> dict[str, str]:
    data: dict[str, str] = one("ConfigMap")["data"]
    return data


def container() -> dict[str, Any]:
    containers = one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    spec: dict[str, Any] = containers[0]
    return spec


def strict(schema: Any) -> Any:
    """The CRD schema as the API server checks it with field validation on: unknown fields are errors."""
    if isinstance(schema, dict):
        converted = {key: strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            converted["additionalProperties"] = False
        return converted
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@cache
def keda_validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = yaml.safe_load((KEDA_SCHEMAS / f"{kind.lower()}-v1alpha1.yaml").read_text())
    return jsonschema.Draft202012Validator(strict(schema))


def validate(document: dict[str, Any]) -> None:
    if document["apiVersion"] == "keda.sh/v1alpha1":
        keda_validator(document["kind"]).validate(document)
    else:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_renders_exactly_the_expected_resources():
    kinds = sorted((document["kind"], document["metadata"]["name"]) for document in rendered())
    assert [kind for kind, _ in kinds] == [
        "ConfigMap",
        "CronJob",
        "Deployment",
        "Job",
        "Namespace",
        "PodDisruptionBudget",
        "ScaledObject",
        "ServiceAccount",
        "TriggerAuthentication",
    ]
    # the params ConfigMap is local configuration: a source for replacements, never applied
    assert all(name != "filequeue-params" for _, name in kinds)


@pytest.mark.parametrize("index", range(9))
def test_every_rendered_manifest_is_valid_against_its_schema(index):
    validate(rendered()[index])


def test_the_validators_reject_misspelt_fields():
    broken_scaler = copy.deepcopy(one("ScaledObject"))
    broken_scaler["spec"]["pollingIntervall"] = 10
    broken_auth = copy.deepcopy(one("TriggerAuthentication"))
    broken_auth["spec"]["podIdentity"]["provider"] = "aws-irsa"
    broken_deployment = copy.deepcopy(one("Deployment"))
    broken_deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    for document in (broken_scaler, broken_auth):
        with pytest.raises(jsonschema.ValidationError):
            validate(document)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken_deployment)


def test_the_deployment_leaves_its_replica_count_to_keda():
    # A replicas field would reset the live pods to it on every `kubectl apply`.
    deployment = one("Deployment")
    scaler = one("ScaledObject")
    assert "replicas" not in deployment["spec"]
    assert scaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }


def test_the_pod_runs_non_root_read_only_without_capabilities_with_tmp_writable():
    pod = one("Deployment")["spec"]["template"]["spec"]
    security = container()["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container()["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_the_pod_user_is_the_images_user():
    dockerfile = (CONTAINER / "Dockerfile").read_text()
    image_user = re.findall(r"^USER (\d+)", dockerfile, flags=re.MULTILINE)[-1]
    assert one("Deployment")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(image_user)


def test_resources_are_requested_and_limited():
    resources = container()["resources"]
    for kind in ("cpu", "memory"):
        assert resources["requests"][kind]
        assert resources["limits"][kind]


def test_probes_hit_the_worker_health_endpoints_on_its_configured_port():
    port = int(worker_env()["FILEQUEUE_HEALTH_PORT"])
    ports = {entry["name"]: entry["containerPort"] for entry in container()["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        get = container()[probe]["httpGet"]
        assert get["path"] == path
        assert ports[get["port"]] == port


def test_the_worker_environment_is_valid_settings_with_only_known_names():
    env = worker_env()
    known = set(env_names())
    unknown = {name for name in env if name not in known and not name.startswith(("AWS_", "POWERTOOLS_"))}
    assert unknown == set()
    settings = Settings.from_env(env)
    assert settings.require_queue() == params()["QUEUE_URL"]
    container_env = container()["envFrom"]
    assert container_env == [{"configMapRef": {"name": one("ConfigMap")["metadata"]["name"]}}]


def test_the_grace_period_covers_the_long_poll_the_batch_deadline_and_the_release_and_fits_a_spot_notice():
    env = worker_env()
    wait = int(env["FILEQUEUE_WORKER_WAIT_TIME_SECONDS"])
    grace = float(env["FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS"])
    margin = float(env["FILEQUEUE_DEADLINE_MARGIN_SECONDS"])
    extract = float(env["FILEQUEUE_EXTRACT_TIMEOUT_SECONDS"])
    write_margin = float(env["FILEQUEUE_WRITE_MARGIN_SECONDS"])
    visibility = int(env["FILEQUEUE_WORKER_VISIBILITY_TIMEOUT_SECONDS"])
    termination = one("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]

    # a record that needs the whole extraction limit can still be written within the grace
    assert grace >= extract + write_margin
    # a record started with the least time allowed gets its whole extraction limit, never a clamped one
    assert margin >= extract + write_margin
    # some record can still start after SIGTERM
    assert grace >= margin + ACK_RESERVE_SECONDS
    # the pod lives through a long poll in flight, the batch deadline and the deletes and releases after it
    assert termination >= wait + grace + contract.RELEASE_SECONDS
    assert termination <= SPOT_NOTICE_SECONDS
    # the lease, renewed every third of it, must leave room for work, or the handler would start nothing
    assert visibility * 2 / 3 > margin + ACK_RESERVE_SECONDS


def test_the_extraction_cap_comes_from_the_containers_memory_limit():
    (variable,) = [entry for entry in container()["env"] if entry["name"] == "FILEQUEUE_MEMORY_LIMIT_MB"]
    assert variable["valueFrom"]["resourceFieldRef"] == {
        "containerName": container()["name"],
        "resource": "limits.memory",
        "divisor": "1Mi",
    }
    # no fixed cap that would ignore the limit
    assert "FILEQUEUE_EXTRACT_MEMORY_MB" not in worker_env()
    limit_mb = int(container()["resources"]["limits"]["memory"].removesuffix("Gi")) * 1024
    processes = int(worker_env()["FILEQUEUE_WORKER_PROCESSES"])
    assert extract_memory_mb(limit_mb, processes) * processes < limit_mb


def test_every_object_lives_in_the_one_declared_namespace():
    (namespace,) = [document["metadata"]["name"] for document in rendered() if document["kind"] == "Namespace"]
    for document in rendered():
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == namespace, document["kind"]


def test_the_pod_disruption_budget_covers_the_workers_and_lets_some_go():
    budget = one("PodDisruptionBudget")["spec"]
    labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget["maxUnavailable"] not in (0, "0%")


def test_every_container_requests_ephemeral_storage_within_its_limit():
    for kind in ("Deployment", "Job"):
        for spec in one(kind)["spec"]["template"]["spec"]["containers"]:
            assert spec["resources"]["requests"]["ephemeral-storage"], kind
            assert spec["resources"]["limits"]["ephemeral-storage"], kind


def test_the_migration_job_runs_migrate_once_as_the_workers_do():
    job = one("Job")
    pod = job["spec"]["template"]["spec"]
    worker_pod = one("Deployment")["spec"]["template"]["spec"]
    (migrate,) = pod["containers"]
    assert migrate["command"] == ["filequeue", "migrate"]
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1
    for field in ("serviceAccountName", "securityContext", "automountServiceAccountToken"):
        assert pod[field] == worker_pod[field], field
    assert migrate["securityContext"] == container()["securityContext"]
    assert (migrate["image"], migrate["envFrom"]) == (container()["image"], container()["envFrom"])
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migration"


def test_the_migration_step_can_be_applied_without_starting_workers():
    # the README applies `-l app.kubernetes.io/component!=worker` first: everything the Job needs, no worker
    selected = [
        document["kind"]
        for document in rendered()
        if document["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "worker"
    ]
    assert sorted(selected) == ["ConfigMap", "Job", "Namespace", "ServiceAccount"]


def test_scheduling_prefers_spot_and_spreads_pods():
    pod = one("Deployment")["spec"]["template"]["spec"]
    labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    preferred = pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    spot = [
        expression
        for term in preferred
        for expression in term["preference"]["matchExpressions"]
        if expression["key"] == "karpenter.sh/capacity-type"
    ]
    assert spot == [{"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}]
    assert any(toleration["key"] == "karpenter.sh/capacity-type" for toleration in pod["tolerations"])
    spread = {constraint["topologyKey"]: constraint for constraint in pod["topologySpreadConstraints"]}
    assert set(spread) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for constraint in spread.values():
        assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()
    assert one("Deployment")["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_service_account_carries_the_irsa_role_and_the_pod_uses_it():
    account = one("ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == params()["WORKER_ROLE_ARN"]
    assert one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_the_scaled_object_scales_on_queue_depth_including_messages_in_flight():
    spec = one("ScaledObject")["spec"]
    (trigger,) = spec["triggers"]
    metadata = trigger["metadata"]
    assert trigger["type"] == "aws-sqs-queue"
    assert "activationQueueLength" in metadata
    assert metadata["scaleOnInFlight"] == "true"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 20)
    assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (10, 60)
    assert spec["fallback"]["replicas"] > 0
    assert spec["fallback"]["failureThreshold"] > 0
    # one pod per pod's worth of messages: each worker process holds one batch at a time
    env = worker_env()
    capacity = int(env["FILEQUEUE_WORKER_PROCESSES"]) * int(env["FILEQUEUE_WORKER_BATCH_SIZE"])
    assert int(metadata["queueLength"]) == capacity
    assert metadata["queueURL"] == worker_env()["FILEQUEUE_QUEUE_URL"] == params()["QUEUE_URL"]
    assert metadata["awsRegion"] == worker_env()["AWS_REGION"] == params()["AWS_REGION"]


def test_keda_authenticates_with_aws_pod_identity_and_a_role_of_its_own():
    trigger = one("ScaledObject")["spec"]["triggers"][0]
    authentication = one("TriggerAuthentication")
    assert trigger["authenticationRef"] == {"name": authentication["metadata"]["name"]}
    # roleArn, not identityOwner (the two exclude each other): KEDA assumes the scaler role itself
    assert authentication["spec"]["podIdentity"] == {"provider": "aws", "roleArn": params()["KEDA_ROLE_ARN"]}


def test_nothing_here_touches_the_keda_operators_identity():
    # A shared cluster's operator keeps its own service account and role: no object in KEDA's namespace,
    # and no ServiceAccount but the workers'.
    accounts = [document["metadata"]["name"] for document in rendered() if document["kind"] == "ServiceAccount"]
    assert accounts == ["filequeue-worker"]
    assert all(document["metadata"].get("namespace") != "keda" for document in rendered())


def test_the_image_and_command_are_the_containers():
    assert container()["image"] == params()["IMAGE"]
    cmd = re.findall(r"^CMD (.+)$", (CONTAINER / "Dockerfile").read_text(), flags=re.MULTILINE)[-1]
    assert container()["command"] == json.loads(cmd)


def test_every_per_environment_value_comes_from_params_env(tmp_path):
    # Given a copy of the manifests with a different params.env (what an overlay does)
    overlay = tmp_path / "k8s"
    shutil.copytree(K8S, overlay)
    original = params()
    changed = {
        "QUEUE_URL": "https://sqs.us-west-2.amazonaws.com/210987654321/other-queue",
        "AWS_REGION": "us-west-2",
        "DATABASE_SECRET_ARN": "arn:aws:secretsmanager:us-west-2:210987654321:secret:other-db",
        "WORKER_ROLE_ARN": "arn:aws:iam::210987654321:role/other-worker",
        "KEDA_ROLE_ARN": "arn:aws:iam::210987654321:role/other-keda",
        "IMAGE": "registry.example/other:9.9.9",
        "EMBEDDER": "hashing",
        "EMBEDDING_DIMENSION": "384",
    }
    assert set(changed) == set(original)
    (overlay / "params.env").write_text("".join(f"{name}={value}\n" for name, value in changed.items()))

    # When it is rendered
    text = yaml.safe_dump_all(render(overlay))

    # Then every new value is used and no old value is left anywhere
    for name, value in changed.items():
        assert value in text, name
        assert original[name] not in text, name
