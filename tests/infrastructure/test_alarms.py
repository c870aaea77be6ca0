from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aws_cdk.assertions import Capture, Match

from handlers import batch
from tests.infrastructure.template_queries import logical_id_by_prefix, only_resource, resource_by_prefix, resources

if TYPE_CHECKING:
    from aws_cdk.assertions import Template

    from tests.infrastructure.conftest import Synthesized

ALARM = "AWS::CloudWatch::Alarm"


def _alarm_on(template: Template, namespace: str, metric: str) -> dict[str, Any]:
    """The properties of the one alarm watching `metric` in `namespace`."""
    _, alarm = only_resource(template, ALARM, {"Namespace": namespace, "MetricName": metric})
    properties: dict[str, Any] = alarm["Properties"]
    return properties


def _queue_dimension(template: Template, prefix: str) -> list[dict[str, Any]]:
    queue_id = logical_id_by_prefix(template, "AWS::SQS::Queue", prefix)
    return [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]


def test_any_message_in_the_dead_letter_queue_raises_an_alarm(any_synth: Synthesized) -> None:
    template = any_synth.template

    template.has_resource_properties(
        ALARM,
        {
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": _queue_dimension(template, "IngestDeadLetterQueue"),
            "ComparisonOperator": "GreaterThanThreshold",
            "Threshold": 0,
            "Statistic": "Maximum",
        },
    )


def test_an_old_message_in_the_queue_raises_an_alarm(default_synth: Synthesized, full_synth: Synthesized) -> None:
    default_alarm = _alarm_on(default_synth.template, "AWS/SQS", "ApproximateAgeOfOldestMessage")
    full_alarm = _alarm_on(full_synth.template, "AWS/SQS", "ApproximateAgeOfOldestMessage")

    assert default_alarm["Dimensions"] == _queue_dimension(default_synth.template, "IngestQueue")
    assert (default_alarm["ComparisonOperator"], default_alarm["Threshold"]) == ("GreaterThanThreshold", 3600)
    assert full_alarm["Threshold"] == 900
    # Well before the queue's one-day retention drops the message.
    assert default_alarm["Threshold"] * default_alarm["EvaluationPeriods"] < 24 * 60 * 60


def test_lambda_errors_and_throttles_raise_alarms(any_synth: Synthesized) -> None:
    template = any_synth.template
    function_id = logical_id_by_prefix(template, "AWS::Lambda::Function", "LambdaConsumerFunction")

    for metric in ("Errors", "Throttles"):
        template.has_resource_properties(
            ALARM,
            {
                "Namespace": "AWS/Lambda",
                "MetricName": metric,
                "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": function_id}}],
                "ComparisonOperator": "GreaterThanThreshold",
                "Threshold": 0,
                "Statistic": "Sum",
            },
        )


def test_alarms_have_no_actions_without_a_topic(default_synth: Synthesized) -> None:
    template = default_synth.template

    template.resource_count_is("AWS::SNS::Topic", 0)
    assert resources(template, ALARM, {"AlarmActions": Match.any_value()}) == {}


def test_alarm_topic_receives_every_alarm_and_mails_the_given_address(full_synth: Synthesized) -> None:
    template = full_synth.template
    topic_id, _ = only_resource(template, "AWS::SNS::Topic")

    template.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"})
    template.resource_count_is(ALARM, 6)
    notified = {"AlarmActions": [{"Ref": topic_id}], "OKActions": [{"Ref": topic_id}]}
    assert len(resources(template, ALARM, notified)) == 6
    template.has_output("alarmTopicArn", {"Value": {"Ref": topic_id}})


def test_alarm_topic_refuses_plain_http(full_synth: Synthesized) -> None:
    full_synth.template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )


def test_lambda_duration_near_the_timeout_raises_an_alarm(default_synth: Synthesized, full_synth: Synthesized) -> None:
    # 80 % of the 300 s default and of the configured 120 s, in milliseconds
    for synth, threshold in ((default_synth, 240_000), (full_synth, 96_000)):
        synth.template.has_resource_properties(
            ALARM,
            {"Namespace": "AWS/Lambda", "MetricName": "Duration", "Threshold": threshold, "Statistic": "Maximum"},
        )


def _failure_metric(template: Template, log_group_name: object) -> tuple[str, str]:
    """Namespace and name of the metric the one metric filter on `log_group_name` counts into."""
    namespace, name = Capture(), Capture()
    template.resource_count_is("AWS::Logs::MetricFilter", 1)
    template.has_resource_properties(
        "AWS::Logs::MetricFilter",
        {
            "LogGroupName": log_group_name,
            "MetricTransformations": [{"MetricNamespace": namespace, "MetricName": name, "MetricValue": "1"}],
        },
    )
    return namespace.as_string(), name.as_string()


def test_partial_batch_failures_of_the_lambda_are_counted_from_its_logs_and_raise_an_alarm(
    default_synth: Synthesized,
) -> None:
    template = default_synth.template
    log_group_id = logical_id_by_prefix(template, "AWS::Logs::LogGroup", "LambdaConsumerLogGroup")

    namespace, metric = _failure_metric(template, {"Ref": log_group_id})

    template.has_resource_properties(
        ALARM,
        {
            "Namespace": namespace,
            "MetricName": metric,
            "ComparisonOperator": "GreaterThanThreshold",
            "Threshold": 0,
            "Statistic": "Sum",
        },
    )


def test_the_failure_pattern_matches_the_log_lines_the_handler_writes() -> None:
    # The pattern names the handler's own messages and outcome; a renamed message would silence the alarm.
    from inspect import getsource

    from cdk.alarms_construct import BATCH_ITEM_FAILURE_PATTERN
    from handlers.model import OutcomeStatus

    source = getsource(batch)
    pattern = BATCH_ITEM_FAILURE_PATTERN.log_pattern_string
    for message in ("malformed event", "malformed record"):
        assert f'"{message}"' in source
        assert message in pattern
    assert '"outcome": OutcomeStatus.RETRY' in source
    assert f'$.outcome = "{OutcomeStatus.RETRY.value}"' in pattern


def test_workers_partial_batch_failures_raise_an_alarm_from_their_log_group(eks_synth: Synthesized) -> None:
    template = eks_synth.template

    namespace, metric = _failure_metric(template, "/aws/containerinsights/filequeue/application")

    _alarm_on(template, namespace, metric)
    # no Lambda, so no Lambda alarms
    assert resources(template, ALARM, {"Namespace": "AWS/Lambda"}) == {}


def test_a_dashboard_shows_the_queue_the_dlq_and_each_runtime(full_synth: Synthesized) -> None:
    _, dashboard = only_resource(full_synth.template, "AWS::CloudWatch::Dashboard")

    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for title in ("Queue", "Dead letters", "Lambda consumer"):
        assert title in body


def test_every_row_of_the_alarm_tables_is_one_alarm_with_its_description_and_periods(full_synth: Synthesized) -> None:
    from cdk.alarms_construct import FUNCTION_ALARMS, QUEUE_ALARMS

    for spec in (*QUEUE_ALARMS, *FUNCTION_ALARMS):
        properties = resource_by_prefix(full_synth.template, ALARM, f"Alarms{spec.construct_id}")["Properties"]
        assert (properties["AlarmDescription"], properties["EvaluationPeriods"]) == (spec.description, spec.periods)
