"""Where the functions (and the database the stack may create) run: a VPC given by id, a new one, or none.

A given VPC is imported by id, without a lookup, so synthesis needs no credentials. A new VPC is made only
for `database=aurora` without `vpcId`: private subnets without internet access, and endpoints for the few
AWS APIs the handler calls from inside it (S3 by a gateway endpoint, Secrets Manager, and Bedrock when it
embeds with Bedrock); SQS is polled by Lambda's event source outside the VPC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aws_cdk import Fn
from aws_cdk import aws_ec2 as ec2

from cdk.acknowledge import acknowledge

if TYPE_CHECKING:
    from constructs import Construct

    from cdk.config import FileQueueConfig

NEW_VPC_AZS = 2
# A literal range, so the endpoints' ingress rules name it (cdk-nag cannot judge a CIDR token).
NEW_VPC_CIDR = "10.40.0.0/16"


@dataclass(frozen=True)
class Network:
    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    # The functions' security groups: from context, else one the stack creates (None lets CDK create it).
    function_security_groups: list[ec2.ISecurityGroup] | None
    created: bool


def build_network(scope: Construct, config: FileQueueConfig) -> Network | None:
    if config.vpc_id is not None:
        return _imported(scope, config)
    if config.creates_database:
        return _created(scope, config)
    return None


def _imported(scope: Construct, config: FileQueueConfig) -> Network:
    vpc = ec2.Vpc.from_vpc_attributes(scope, "Vpc", vpc_id=config.vpc_id or "", availability_zones=Fn.get_azs())
    acknowledge(
        vpc,
        "Annotation::@aws-cdk/aws-ec2:vpcAttributeIsListTokenavailabilityZones",
        "The function is placed in explicit subnet ids; nothing here selects subnets by availability zone.",
    )
    subnets: list[ec2.ISubnet] = []
    for index, subnet_id in enumerate(config.subnet_ids):
        subnet = ec2.Subnet.from_subnet_id(scope, f"Subnet{index}", subnet_id)
        acknowledge(
            subnet,
            "Annotation::@aws-cdk/aws-ec2:noSubnetRouteTableId",
            "Lambda's VpcConfig needs only the subnet id; nothing here reads the subnet's route table.",
        )
        subnets.append(subnet)
    security_groups: list[ec2.ISecurityGroup] | None = None
    if config.security_group_ids:
        security_groups = [
            ec2.SecurityGroup.from_security_group_id(scope, f"SecurityGroup{index}", group_id, mutable=False)
            for index, group_id in enumerate(config.security_group_ids)
        ]
    return Network(vpc, ec2.SubnetSelection(subnets=subnets), security_groups, created=False)


def _created(scope: Construct, config: FileQueueConfig) -> Network:
    private = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
    vpc = ec2.Vpc(
        scope,
        "Vpc",
        ip_addresses=ec2.IpAddresses.cidr(NEW_VPC_CIDR),
        max_azs=NEW_VPC_AZS,
        nat_gateways=0,
        subnet_configuration=[
            ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=22)
        ],
        gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
        flow_logs={"FlowLog": ec2.FlowLogOptions(traffic_type=ec2.FlowLogTrafficType.REJECT)},
    )
    services = {"SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER}
    if config.embedder == "bedrock":
        services["BedrockRuntime"] = ec2.InterfaceVpcEndpointAwsService.BEDROCK_RUNTIME
    for name, service in services.items():
        endpoint = vpc.add_interface_endpoint(
            name, service=service, subnets=private, private_dns_enabled=True, open=False
        )
        endpoint.connections.allow_default_port_from(ec2.Peer.ipv4(NEW_VPC_CIDR), "HTTPS from the VPC")
    return Network(vpc, private, None, created=True)
