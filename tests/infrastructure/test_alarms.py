from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from handlers import batch
from tests.infrastructure.template_queries import logical_id_by_prefix, only_resource, resources

if TYPE_CHECKING:
    from tests.infrastructure.conftest import Synthesized


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: alarm["Properties"] for logical_id, alarm in resources(template, "AWS::CloudWatch::Alarm").items()
    }


def _alarm_on(template: dict[str, Any], namespace: str, metric: str) -> dict[str, Any]:
    (alarm,) = [
        alarm
        for alarm in _alarms(template).values()
        if alarm["Namespace"] == namespace and alarm["MetricName"] == metric
    ]
    return alarm


def _queue_dimension(template: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    queue_id = logical_id_by_prefix(template, "AWS::SQS::Queue", prefix)
    return [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]


def test_any_message_in_the_dead_letter_queue_raises_an_alarm(any_synth: Synthesized) -> None:
    template = any_synth.template_json
    alarm = _alarm_on(template, "AWS/SQS", "ApproximateNumberOfMessagesVisible")

    assert alarm["Dimensions"] == _queue_dimension(template, "IngestDeadLetterQueue")
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["Statistic"] == "Maximum"


def test_an_old_message_in_the_queue_raises_an_alarm(default_synth: Synthesized, full_synth: Synthesized) -> None:
    default_alarm = _alarm_on(default_synth.template_json, "AWS/SQS", "ApproximateAgeOfOldestMessage")
    full_alarm = _alarm_on(full_synth.template_json, "AWS/SQS", "ApproximateAgeOfOldestMessage")

    assert default_alarm["Dimensions"] == _queue_dimension(default_synth.template_json, "IngestQueue")
    assert (default_alarm["ComparisonOperator"], default_alarm["Threshold"]) == ("GreaterThanThreshold", 3600)
    assert full_alarm["Threshold"] == 900
    # Well before the queue's one-day retention drops the message.
    assert default_alarm["Threshold"] * default_alarm["EvaluationPeriods"] < 24 * 60 * 60


def test_lambda_errors_and_throttles_raise_alarms(any_synth: Synthesized) -> None:
    template = any_synth.template_json
    function_id = logical_id_by_prefix(template, "AWS::Lambda::Function", "LambdaConsumerFunction")

    for metric in ("Errors", "Throttles"):
        alarm = _alarm_on(template, "AWS/Lambda", metric)
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]
        assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["Statistic"]) == (
            "GreaterThanThreshold",
            0,
            "Sum",
        )


def test_alarms_have_no_actions_without_a_topic(default_synth: Synthesized) -> None:
    template = default_synth.template_json

    assert resources(template, "AWS::SNS::Topic") == {}
    assert all("AlarmActions" not in alarm for alarm in _alarms(template).values())


def test_alarm_topic_receives_every_alarm_and_mails_the_given_address(full_synth: Synthesized) -> None:
    template = full_synth.template_json
    topic_id, _ = only_resource(template, "AWS::SNS::Topic")
    _, subscription = only_resource(template, "AWS::SNS::Subscription")

    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "ops@example.com"
    alarms = _alarms(template)
    assert len(alarms) == 6
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
        assert alarm["OKActions"] == [{"Ref": topic_id}]
    assert template["Outputs"]["alarmTopicArn"]["Value"] == {"Ref": topic_id}


def test_alarm_topic_refuses_plain_http(full_synth: Synthesized) -> None:
    _, policy = only_resource(full_synth.template_json, "AWS::SNS::TopicPolicy")

    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for statement in statements
    )


def _metric_filters(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in resources(template, "AWS::Logs::MetricFilter").items()
    }


def test_lambda_duration_near_the_timeout_raises_an_alarm(default_synth: Synthesized, full_synth: Synthesized) -> None:
    default_alarm = _alarm_on(default_synth.template_json, "AWS/Lambda", "Duration")
    full_alarm = _alarm_on(full_synth.template_json, "AWS/Lambda", "Duration")

    # 80 % of the 300 s default and of the configured 120 s, in milliseconds
    assert (default_alarm["Threshold"], full_alarm["Threshold"]) == (240_000, 96_000)
    assert default_alarm["Statistic"] == "Maximum"


def test_partial_batch_failures_of_the_lambda_are_counted_from_its_logs_and_raise_an_alarm(
    default_synth: Synthesized,
) -> None:
    template = default_synth.template_json
    (metric_filter,) = _metric_filters(template).values()
    log_group_id = logical_id_by_prefix(template, "AWS::Logs::LogGroup", "LambdaConsumerLogGroup")

    assert metric_filter["LogGroupName"] == {"Ref": log_group_id}
    (transformation,) = metric_filter["MetricTransformations"]
    alarm = _alarm_on(template, transformation["MetricNamespace"], transformation["MetricName"])
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["Statistic"]) == ("GreaterThanThreshold", 0, "Sum")


def test_the_failure_pattern_matches_the_log_lines_the_handler_writes() -> None:
    # The pattern names the handler's own messages and outcome; a renamed message would silence the alarm.
    from inspect import getsource

    from cdk.alarms_construct import BATCH_ITEM_FAILURE_PATTERN

    source = getsource(batch)
    pattern = BATCH_ITEM_FAILURE_PATTERN.log_pattern_string
    for message in ("malformed event", "malformed record"):
        assert f'"{message}"' in source
        assert message in pattern
    assert '"outcome": "retry"' in source
    assert '$.outcome = "retry"' in pattern


def test_workers_partial_batch_failures_raise_an_alarm_from_their_log_group(eks_synth: Synthesized) -> None:
    template = eks_synth.template_json
    (metric_filter,) = _metric_filters(template).values()

    assert metric_filter["LogGroupName"] == "/aws/containerinsights/filequeue/application"
    (transformation,) = metric_filter["MetricTransformations"]
    _alarm_on(template, transformation["MetricNamespace"], transformation["MetricName"])
    # no Lambda, so no Lambda alarms
    assert not [alarm for alarm in _alarms(template).values() if alarm["Namespace"] == "AWS/Lambda"]


def test_a_dashboard_shows_the_queue_the_dlq_and_each_runtime(full_synth: Synthesized) -> None:
    _, dashboard = only_resource(full_synth.template_json, "AWS::CloudWatch::Dashboard")

    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for title in ("Queue", "Dead letters", "Lambda consumer"):
        assert title in body
