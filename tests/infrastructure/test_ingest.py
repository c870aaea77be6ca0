"""Bucket, notifications, queue and DLQ, including the guards on retention, visibility and redrive."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_cdk.assertions import Annotations, Match

from tests.infrastructure.template_queries import (
    flatten,
    logical_id_by_prefix,
    only_resource,
    properties_by_prefix,
    resources,
)

if TYPE_CHECKING:
    from aws_cdk.assertions import Template

    from tests.infrastructure.conftest import Synthesized

S3_NOTIFICATION_MAX_BYTES = 64 * 1024


def _uploads_bucket_id(template: Template) -> str:
    return logical_id_by_prefix(template, "AWS::S3::Bucket", "IngestUploadsBucket")


def _queue_ids(template: Template) -> tuple[str, str]:
    return (
        logical_id_by_prefix(template, "AWS::SQS::Queue", "IngestQueue"),
        logical_id_by_prefix(template, "AWS::SQS::Queue", "IngestDeadLetterQueue"),
    )


def _queue(template: Template) -> dict[str, Any]:
    return properties_by_prefix(template, "AWS::SQS::Queue", "IngestQueue")


def _dead_letter_queue(template: Template) -> dict[str, Any]:
    return properties_by_prefix(template, "AWS::SQS::Queue", "IngestDeadLetterQueue")


def _event_source_mapping(template: Template) -> dict[str, Any]:
    properties: dict[str, Any] = only_resource(template, "AWS::Lambda::EventSourceMapping")[1]["Properties"]
    return properties


def _consumer_function(template: Template) -> dict[str, Any]:
    return properties_by_prefix(template, "AWS::Lambda::Function", "LambdaConsumerFunction")


def _denies_insecure_transport(statements: list[dict[str, Any]]) -> bool:
    return any(
        statement["Effect"] == "Deny" and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        for statement in statements
    )


def test_uploads_bucket_is_versioned_private_encrypted_and_logged(any_synth: Synthesized) -> None:
    template = any_synth.template
    bucket = properties_by_prefix(template, "AWS::S3::Bucket", "IngestUploadsBucket")

    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    encryption = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption == [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
    assert flatten(bucket["LoggingConfiguration"]["DestinationBucketName"]).startswith("<IngestAccessLogsBucket")


def test_uploads_bucket_expires_noncurrent_versions(any_synth: Synthesized) -> None:
    template = any_synth.template
    rules = properties_by_prefix(template, "AWS::S3::Bucket", "IngestUploadsBucket")["LifecycleConfiguration"]["Rules"]

    noncurrent = [rule for rule in rules if "NoncurrentVersionExpiration" in rule]
    assert len(noncurrent) == 1
    assert noncurrent[0]["Status"] == "Enabled"
    assert noncurrent[0]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30


def test_every_bucket_policy_denies_insecure_transport(any_synth: Synthesized) -> None:
    template = any_synth.template
    buckets = resources(template, "AWS::S3::Bucket")
    policies = resources(template, "AWS::S3::BucketPolicy").values()

    protected = {
        flatten(policy["Properties"]["Bucket"])
        for policy in policies
        if _denies_insecure_transport(policy["Properties"]["PolicyDocument"]["Statement"])
    }
    assert protected == {f"<{bucket_id}>" for bucket_id in buckets}


def test_default_notifications_cover_created_and_removed_under_uploads(default_synth: Synthesized) -> None:
    template = default_synth.template
    queue_id, _ = _queue_ids(template)
    _, notifications = only_resource(template, "Custom::S3BucketNotifications")

    configurations = notifications["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert sorted(event for configuration in configurations for event in configuration["Events"]) == [
        "s3:ObjectCreated:*",
        "s3:ObjectRemoved:*",
    ]
    for configuration in configurations:
        assert configuration["QueueArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
        assert configuration["Filter"] == {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}}
    assert notifications["Properties"]["BucketName"] == {"Ref": _uploads_bucket_id(template)}


def test_notification_prefix_follows_context(full_synth: Synthesized) -> None:
    _, notifications = only_resource(full_synth.template, "Custom::S3BucketNotifications")

    prefixes = {
        rule["Value"]
        for configuration in notifications["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
        for rule in configuration["Filter"]["Key"]["FilterRules"]
    }
    assert prefixes == {"incoming/"}


def test_queue_policy_lets_only_this_bucket_of_this_account_send(any_synth: Synthesized) -> None:
    template = any_synth.template
    queue_id, _ = _queue_ids(template)
    policy = next(
        policy
        for policy in resources(template, "AWS::SQS::QueuePolicy").values()
        if policy["Properties"]["Queues"] == [{"Ref": queue_id}]
    )
    statements = policy["Properties"]["PolicyDocument"]["Statement"]

    allows = [statement for statement in statements if statement["Effect"] == "Allow"]
    assert allows == [
        {
            "Sid": "AllowUploadBucketNotifications",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": {"Fn::GetAtt": [queue_id, "Arn"]},
            "Condition": {
                "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [_uploads_bucket_id(template), "Arn"]}},
                "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
            },
        }
    ]
    assert _denies_insecure_transport(statements)


def test_both_queues_are_encrypted_and_refuse_plain_http(any_synth: Synthesized) -> None:
    template = any_synth.template
    queue_ids = set(_queue_ids(template))

    assert set(resources(template, "AWS::SQS::Queue", {"SqsManagedSseEnabled": True})) == queue_ids
    protected = {
        flatten(queue_ref)
        for policy in resources(template, "AWS::SQS::QueuePolicy").values()
        if _denies_insecure_transport(policy["Properties"]["PolicyDocument"]["Statement"])
        for queue_ref in policy["Properties"]["Queues"]
    }
    assert protected == {f"<{queue_id}>" for queue_id in queue_ids}


def test_visibility_timeout_covers_six_function_timeouts_plus_the_batching_window(any_synth: Synthesized) -> None:
    template = any_synth.template
    function_timeout = _consumer_function(template)["Timeout"]
    batching_window = _event_source_mapping(template)["MaximumBatchingWindowInSeconds"]

    assert _queue(template)["VisibilityTimeout"] >= 6 * function_timeout + batching_window


def test_default_function_timeout_and_visibility_follow_the_defaults(default_synth: Synthesized) -> None:
    template = default_synth.template

    assert _consumer_function(template)["Timeout"] == 300
    assert _queue(template)["VisibilityTimeout"] == 6 * 300 + 5


def test_configured_timeout_and_window_move_the_visibility_timeout(full_synth: Synthesized) -> None:
    template = full_synth.template

    assert _consumer_function(template)["Timeout"] == 120
    assert _event_source_mapping(template)["MaximumBatchingWindowInSeconds"] == 10
    assert _queue(template)["VisibilityTimeout"] == 6 * 120 + 10


def test_queue_keeps_messages_one_day_and_accepts_every_s3_notification(any_synth: Synthesized) -> None:
    queue = _queue(any_synth.template)

    assert queue["MessageRetentionPeriod"] == 24 * 60 * 60
    assert queue["MaximumMessageSize"] >= S3_NOTIFICATION_MAX_BYTES


def test_dead_letter_queue_outlives_the_source_queue(any_synth: Synthesized) -> None:
    template = any_synth.template

    assert _dead_letter_queue(template)["MessageRetentionPeriod"] > _queue(template)["MessageRetentionPeriod"]
    assert _dead_letter_queue(template)["MessageRetentionPeriod"] == 14 * 24 * 60 * 60


def test_default_redrive_after_one_delivery_and_three_retries_is_flagged_below_the_recommended_five(
    default_synth: Synthesized,
) -> None:
    template = default_synth.template
    _, dead_letter_queue_id = _queue_ids(template)

    assert _queue(template)["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dead_letter_queue_id, "Arn"]},
        "maxReceiveCount": 4,
    }
    Annotations.from_stack(default_synth.stack).has_info(
        "/FileQueue/Ingest/Queue",
        Match.string_like_regexp(r"maxReceiveCount is 4 \(one delivery and 3 retries\); AWS recommends at least 5"),
    )


def test_the_dead_letter_queue_survives_stack_deletion_and_takes_redrives_only_from_its_queue(
    any_synth: Synthesized,
) -> None:
    template = any_synth.template
    _, dead_letter_queue_id = _queue_ids(template)
    dead_letter_queue = resources(template, "AWS::SQS::Queue")[dead_letter_queue_id]

    assert (dead_letter_queue["DeletionPolicy"], dead_letter_queue["UpdateReplacePolicy"]) == ("Retain", "Retain")
    allow = dead_letter_queue["Properties"]["RedriveAllowPolicy"]
    assert allow["redrivePermission"] == "byQueue"
    (source,) = allow["sourceQueueArns"]
    assert flatten(source).endswith(f":{_queue(template)['QueueName']}")


def test_configured_receive_count_of_five_is_not_flagged(full_synth: Synthesized) -> None:
    assert _queue(full_synth.template)["RedrivePolicy"]["maxReceiveCount"] == 5
    infos = Annotations.from_stack(full_synth.stack).find_info("*", Match.string_like_regexp("maxReceiveCount"))
    assert infos == []


def test_every_queue_except_the_dead_letter_queue_redrives(any_synth: Synthesized) -> None:
    template = any_synth.template
    queue_id, _ = _queue_ids(template)

    redriving = {
        logical_id
        for logical_id, queue in resources(template, "AWS::SQS::Queue").items()
        if "RedrivePolicy" in queue["Properties"]
    }
    assert redriving == {queue_id}
