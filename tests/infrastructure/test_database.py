"""`database=aurora`: Aurora Serverless v2 behind RDS Proxy, migrated before the consumers exist, reachable from
both runtimes; and the connection budget checked at synthesis."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from cdk.app import build_app
from cdk.config import ContextError
from cdk.database_construct import MIGRATE_HANDLER
from tests.infrastructure.conftest import AURORA_CONTEXT, WORKER_SECURITY_GROUPS, cdk_json_context
from tests.infrastructure.template_queries import (
    as_list,
    flatten,
    logical_id_by_prefix,
    only_resource,
    resources,
    statements_of_role,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from aws_cdk.assertions import Template

    from tests.infrastructure.conftest import Synthesized


def _id(template: Template, kind: str, prefix: str) -> str:
    return logical_id_by_prefix(template, kind, prefix)


def _resource(template: Template, kind: str, prefix: str) -> Mapping[str, Any]:
    return resources(template, kind)[_id(template, kind, prefix)]


def test_the_cluster_is_aurora_postgresql_16_8_serverless_v2_encrypted_and_protected(
    aurora_synth: Synthesized,
) -> None:
    template = aurora_synth.template
    cluster = _resource(template, "AWS::RDS::DBCluster", "DatabaseCluster")["Properties"]
    (writer,) = resources(template, "AWS::RDS::DBInstance").values()

    assert (cluster["Engine"], cluster["EngineVersion"]) == ("aurora-postgresql", "16.8")
    assert cluster["ServerlessV2ScalingConfiguration"] == {"MinCapacity": 0.5, "MaxCapacity": 4}
    assert writer["Properties"]["DBInstanceClass"] == "db.serverless"
    assert writer["Properties"]["DBClusterIdentifier"] == {"Ref": _id(template, "AWS::RDS::DBCluster", "Database")}
    assert (cluster["StorageEncrypted"], cluster["DeletionProtection"]) == (True, True)


def test_the_proxy_fronts_the_cluster_with_tls_and_a_share_of_its_connections(aurora_synth: Synthesized) -> None:
    template = aurora_synth.template
    proxy_id, proxy = only_resource(template, "AWS::RDS::DBProxy")
    _, target_group = only_resource(template, "AWS::RDS::DBProxyTargetGroup")
    cluster_secret = _id(template, "AWS::SecretsManager::Secret", "DatabaseClusterSecret")

    assert (proxy["Properties"]["EngineFamily"], proxy["Properties"]["RequireTLS"]) == ("POSTGRESQL", True)
    assert [auth["SecretArn"] for auth in proxy["Properties"]["Auth"]] == [{"Ref": cluster_secret}]
    assert target_group["Properties"]["DBProxyName"] == {"Ref": proxy_id}
    assert target_group["Properties"]["DBClusterIdentifiers"] == [
        {"Ref": _id(template, "AWS::RDS::DBCluster", "Database")}
    ]
    assert target_group["Properties"]["ConnectionPoolConfigurationInfo"] == {"MaxConnectionsPercent": 90}


def test_the_migration_runs_after_the_database_and_before_the_consumers_and_their_event_source(
    aurora_synth: Synthesized,
) -> None:
    template = aurora_synth.template
    trigger_id, trigger = only_resource(template, "Custom::Trigger")
    migration = _resource(template, "AWS::Lambda::Function", "DatabaseMigration")
    consumer_id = _id(template, "AWS::Lambda::Function", "LambdaConsumerFunction")
    functions = resources(template, "AWS::Lambda::Function")
    _, mapping = only_resource(template, "AWS::Lambda::EventSourceMapping")
    version = resources(template, "AWS::Lambda::Version")[trigger["Properties"]["HandlerArn"]["Ref"]]

    assert migration["Properties"]["ImageConfig"]["Command"] == [MIGRATE_HANDLER]
    assert version["Properties"]["FunctionName"] == {"Ref": _id(template, "AWS::Lambda::Function", "DatabaseMigration")}
    assert trigger["Properties"]["InvocationType"] == "RequestResponse"
    assert {
        _id(template, "AWS::RDS::DBCluster", "Database"),
        _id(template, "AWS::RDS::DBInstance", "DatabaseClusterWriter"),
        _id(template, "AWS::RDS::DBProxy", "DatabaseProxy"),
        _id(template, "AWS::RDS::DBProxyTargetGroup", "DatabaseProxy"),
        _id(template, "AWS::SecretsManager::Secret", "DatabaseConnectionSecret"),
    } <= set(trigger["DependsOn"])
    for prefix in ("LambdaConsumerFunction", "CompactionFunction"):
        assert trigger_id in functions[_id(template, "AWS::Lambda::Function", prefix)]["DependsOn"], prefix
    # The event source mapping names the consumer, so CloudFormation creates it after the migration.
    assert mapping["Properties"]["FunctionName"] == {"Ref": consumer_id}


def test_every_runtime_reads_the_connection_secret_whose_host_is_the_proxy(aurora_synth: Synthesized) -> None:
    template = aurora_synth.template
    secret_id = _id(template, "AWS::SecretsManager::Secret", "DatabaseConnectionSecret")
    proxy_id, _ = only_resource(template, "AWS::RDS::DBProxy")
    secret = _resource(template, "AWS::SecretsManager::Secret", "DatabaseConnectionSecret")
    host = flatten(secret["Properties"]["SecretString"])

    assert f'"host":"<{proxy_id}.Endpoint>"' in host
    assert '"port":"5432","dbname":"filequeue"' in host
    for function_id, function in resources(template, "AWS::Lambda::Function").items():
        if not function_id.startswith(("LambdaConsumer", "Compaction", "DatabaseMigration")):
            continue
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["FILEQUEUE_DATABASE_SECRET_ARN"] == {"Ref": secret_id}, function_id
    assert "DatabaseCredentialsArn" not in template.to_json().get("Parameters", {})
    template.has_output("databaseSecretArn", {"Value": {"Ref": secret_id}})
    template.has_output("databaseProxyEndpoint", {"Value": {"Fn::GetAtt": [proxy_id, "Endpoint"]}})


@pytest.mark.parametrize(
    "role_prefix", ["LambdaConsumerRole", "CompactionRole", "DatabaseMigrationRole", "IrsaWorkerRole"]
)
def test_each_runtime_role_may_read_the_connection_secret_and_not_the_clusters(
    aurora_synth: Synthesized, role_prefix: str
) -> None:
    template = aurora_synth.template
    connection = _id(template, "AWS::SecretsManager::Secret", "DatabaseConnectionSecret")
    cluster = _id(template, "AWS::SecretsManager::Secret", "DatabaseClusterSecret")
    grants = {
        flatten(resource)
        for statement in statements_of_role(template, _id(template, "AWS::IAM::Role", role_prefix))
        if "secretsmanager:GetSecretValue" in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }

    assert grants == {f"<{connection}>"}
    assert f"<{cluster}>" not in grants


def test_the_proxy_admits_the_functions_and_the_worker_pods_and_the_cluster_only_the_proxy(
    aurora_synth: Synthesized,
) -> None:
    template = aurora_synth.template
    proxy_group = _id(template, "AWS::EC2::SecurityGroup", "DatabaseProxyProxySecurityGroup")
    cluster_group = _id(template, "AWS::EC2::SecurityGroup", "DatabaseClusterSecurityGroup")
    inline = resources(template, "AWS::EC2::SecurityGroup")[proxy_group]["Properties"]["SecurityGroupIngress"]
    standalone = [rule["Properties"] for rule in resources(template, "AWS::EC2::SecurityGroupIngress").values()]

    proxy_sources = {
        (flatten(rule["SourceSecurityGroupId"]), rule["FromPort"], rule["ToPort"])
        for rule in [*inline, *(r for r in standalone if r["GroupId"] == {"Fn::GetAtt": [proxy_group, "GroupId"]})]
    }
    assert proxy_sources == {
        *((group, 5432, 5432) for group in WORKER_SECURITY_GROUPS),
        (f"<{_id(template, 'AWS::EC2::SecurityGroup', 'LambdaConsumerFunctionSecurityGroup')}.GroupId>", 5432, 5432),
        (f"<{_id(template, 'AWS::EC2::SecurityGroup', 'DatabaseMigrationSecurityGroup')}.GroupId>", 5432, 5432),
    }
    cluster_sources = [
        flatten(rule["SourceSecurityGroupId"])
        for rule in standalone
        if rule["GroupId"] == {"Fn::GetAtt": [cluster_group, "GroupId"]}
    ]
    assert cluster_sources == [f"<{proxy_group}.GroupId>"]
    assert "SecurityGroupIngress" not in resources(template, "AWS::EC2::SecurityGroup")[cluster_group]["Properties"]


def test_a_deployment_that_could_open_more_connections_than_the_proxy_may_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    # 1 ACU: max_connections 189, of which the proxy may use 90 % = 170. At full scale Lambda holds
    # 5 x 4, compaction and migration 2, and 20 pods x 2 processes x 4 = 160: 182.
    context = {**cdk_json_context(), **AURORA_CONTEXT, "databaseMaxCapacity": 1}

    with pytest.raises(ContextError) as raised:
        build_app(context, outdir=str(tmp_path))

    assert str(raised.value) == (
        "context maxConcurrency, workerMaxReplicas and the database size overrun the connection budget: "
        "Lambda maxConcurrency 5 x pool 4 = 20 + compaction and migration functions = 2 + "
        "pods workerMaxReplicas 20 x workerProcesses 2 x pool 4 = 160 = 182 connections > 170 "
        "(90% of max_connections 189 that RDS Proxy may use at 0.5..1.0 ACU); lower maxConcurrency or "
        "workerMaxReplicas, or raise databaseMaxCapacity (database=aurora) / databaseMaxConnections"
    )


def test_an_external_database_is_checked_against_its_declared_connection_limit(tmp_path: Path) -> None:
    context = {**cdk_json_context(), "maxConcurrency": 50, "databaseMaxConnections": 100}

    with pytest.raises(ContextError, match=r"Lambda maxConcurrency 50 x pool 4 = 200 .* = 202 connections > 100 "):
        build_app(context, outdir=str(tmp_path))


def test_without_a_vpc_the_stack_makes_a_private_one_with_the_endpoints_the_handler_calls(
    aurora_vpc_synth: Synthesized,
) -> None:
    template = aurora_vpc_synth.template
    (vpc_id,) = resources(template, "AWS::EC2::VPC")
    subnets = resources(template, "AWS::EC2::Subnet")
    endpoints = {
        flatten(endpoint["Properties"]["ServiceName"]).rsplit(".", 1)[-1]: endpoint["Properties"]["VpcEndpointType"]
        for endpoint in resources(template, "AWS::EC2::VPCEndpoint").values()
    }
    consumer = _resource(template, "AWS::Lambda::Function", "LambdaConsumerFunction")["Properties"]
    cluster = _resource(template, "AWS::RDS::DBCluster", "DatabaseCluster")["Properties"]

    assert len(subnets) == 2
    assert all(subnet["Properties"]["MapPublicIpOnLaunch"] is False for subnet in subnets.values())
    assert resources(template, "AWS::EC2::NatGateway") == {}
    assert resources(template, "AWS::EC2::InternetGateway") == {}
    assert endpoints == {"s3": "Gateway", "secretsmanager": "Interface", "bedrock-runtime": "Interface"}
    assert sorted(consumer["VpcConfig"]["SubnetIds"], key=str) == sorted(({"Ref": s} for s in subnets), key=str)
    assert cluster["DBSubnetGroupName"] == {"Ref": _id(template, "AWS::RDS::DBSubnetGroup", "DatabaseClusterSubnets")}
    assert all(flatten(subnet["Properties"]["VpcId"]) == f"<{vpc_id}>" for subnet in subnets.values())
