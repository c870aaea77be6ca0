from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from cdk.acknowledge import acknowledge

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_sqs as sqs

    from cdk.config import FileQueueConfig

# SQS publishes its metrics every minute; Lambda's are summed over five.
QUEUE_PERIOD = Duration.minutes(1)
FUNCTION_PERIOD = Duration.minutes(5)
METRIC_NAMESPACE = "FileQueue"
BATCH_ITEM_FAILURES = "BatchItemFailures"
# The handler's JSON log lines for a record it reports in `batchItemFailures` (handlers/batch.py): every
# retried failure (transient, not started for lack of time, unexpected) has outcome "retry"; a body that is
# no S3 event, or a record without attributes, is logged as "malformed event" / "malformed record". Both
# runtimes log the same lines, so one pattern counts partial-batch failures in Lambda's logs and the pods'.
BATCH_ITEM_FAILURE_PATTERN = logs.FilterPattern.any(
    logs.FilterPattern.string_value("$.outcome", "=", "retry"),
    logs.FilterPattern.string_value("$.message", "=", "malformed event"),
    logs.FilterPattern.string_value("$.message", "=", "malformed record"),
)
# Alarm when the slowest invocation of a period used this share of the function timeout.
DURATION_ALARM_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class AlarmSpec:
    """One alarm: on which of its group's metrics, when it fires, and what it tells the operator."""

    construct_id: str
    metric: str
    description: str
    # A fixed threshold, or one computed from the deployment's configuration.
    threshold: float | Callable[[FileQueueConfig], float] = 0
    comparison: cloudwatch.ComparisonOperator = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
    periods: int = 1

    def threshold_for(self, config: FileQueueConfig) -> float:
        return self.threshold(config) if callable(self.threshold) else self.threshold


QUEUE_ALARMS = (
    AlarmSpec(
        "DeadLetters",
        "dead_letters",
        "Messages reached the dead-letter queue: a file failed maxReceiveCount times. "
        "Inspect them, fix the cause, then redrive.",
    ),
    AlarmSpec(
        "OldestMessage",
        "oldest_message",
        "The oldest message has waited too long: consumers are stuck, failing or too few "
        "(messages are lost when they outlive the queue's retention).",
        threshold=lambda config: config.oldest_message_alarm_seconds,
        periods=5,
    ),
)
FUNCTION_ALARMS = (
    AlarmSpec(
        "FunctionErrors",
        "errors",
        "The consumer function failed whole invocations (crash, timeout or out of memory); "
        "every message of those batches is retried.",
    ),
    AlarmSpec(
        "FunctionThrottles",
        "throttles",
        "The consumer function was throttled; throttled polls use up receives and can dead-letter healthy messages.",
    ),
    AlarmSpec(
        "FunctionDurationNearTimeout",
        "duration",
        f"An invocation used more than {DURATION_ALARM_SHARE:.0%} of the function timeout: records are "
        "being deferred for lack of time, or the next slow file will hit the timeout and fail its batch.",
        threshold=lambda config: DURATION_ALARM_SHARE * config.function_timeout_seconds * 1000,
    ),
    AlarmSpec(
        "LambdaBatchItemFailures",
        "failures",
        "The Lambda consumer reported records as failed (transient errors, deferred records or bodies "
        "that are no S3 event); SQS redelivers them until maxReceiveCount.",
    ),
)
WORKER_ALARMS = (
    AlarmSpec(
        "WorkerBatchItemFailures",
        "failures",
        "The EKS workers reported records as failed (transient errors, deferred records or bodies that "
        "are no S3 event); SQS redelivers them until maxReceiveCount.",
    ),
)


class AlarmsConstruct(Construct):
    """Alarms and a dashboard for the queue, the DLQ and each deployed runtime; optionally sent to SNS."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FileQueueConfig,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        function: lambda_.IFunction | None,
        function_log_group: logs.ILogGroup | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = self._topic(config) if config.wants_alarm_topic else None
        self.alarms: list[cloudwatch.Alarm] = []
        dead_letters = dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=QUEUE_PERIOD, statistic=cloudwatch.Stats.MAXIMUM
        )
        oldest_message = queue.metric_approximate_age_of_oldest_message(
            period=QUEUE_PERIOD, statistic=cloudwatch.Stats.MAXIMUM
        )
        self._add_alarms(config, QUEUE_ALARMS, {"dead_letters": dead_letters, "oldest_message": oldest_message})
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Queue",
                left=[
                    queue.metric_approximate_number_of_messages_visible(period=QUEUE_PERIOD),
                    queue.metric_approximate_number_of_messages_not_visible(period=QUEUE_PERIOD),
                ],
                right=[oldest_message],
            ),
            cloudwatch.GraphWidget(title="Dead letters", left=[dead_letters]),
        )
        if function is not None and function_log_group is not None:
            self._function_alarms(config, function, function_log_group)
        if config.worker_log_group_name is not None:
            self._worker_alarms(config, config.worker_log_group_name)
        if self.topic is not None:
            action = cloudwatch_actions.SnsAction(self.topic)
            for alarm in self.alarms:
                alarm.add_alarm_action(action)
                alarm.add_ok_action(action)

    def _function_alarms(self, config: FileQueueConfig, function: lambda_.IFunction, log_group: logs.ILogGroup) -> None:
        errors = function.metric_errors(period=FUNCTION_PERIOD, statistic=cloudwatch.Stats.SUM)
        throttles = function.metric_throttles(period=FUNCTION_PERIOD, statistic=cloudwatch.Stats.SUM)
        duration = function.metric_duration(period=FUNCTION_PERIOD, statistic=cloudwatch.Stats.MAXIMUM)
        failures = self._batch_item_failures("Lambda", log_group)
        self._add_alarms(
            config,
            FUNCTION_ALARMS,
            {"errors": errors, "throttles": throttles, "duration": duration, "failures": failures},
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Lambda consumer", left=[errors, throttles, failures], right=[duration])
        )

    def _worker_alarms(self, config: FileQueueConfig, log_group_name: str) -> None:
        log_group = logs.LogGroup.from_log_group_name(self, "WorkerLogGroup", log_group_name)
        failures = self._batch_item_failures("Worker", log_group)
        self._add_alarms(config, WORKER_ALARMS, {"failures": failures})
        self.dashboard.add_widgets(cloudwatch.GraphWidget(title="EKS workers", left=[failures]))

    def _batch_item_failures(self, runtime: str, log_group: logs.ILogGroup) -> cloudwatch.IMetric:
        metric_filter = logs.MetricFilter(
            self,
            f"{runtime}BatchItemFailuresFilter",
            log_group=log_group,
            filter_pattern=BATCH_ITEM_FAILURE_PATTERN,
            metric_namespace=METRIC_NAMESPACE,
            metric_name=f"{runtime}{BATCH_ITEM_FAILURES}",
            metric_value="1",
        )
        return metric_filter.metric(period=FUNCTION_PERIOD, statistic=cloudwatch.Stats.SUM)

    def _add_alarms(
        self, config: FileQueueConfig, specs: tuple[AlarmSpec, ...], metrics: Mapping[str, cloudwatch.IMetric]
    ) -> None:
        for spec in specs:
            self.alarms.append(
                cloudwatch.Alarm(
                    self,
                    spec.construct_id,
                    alarm_description=spec.description,
                    metric=metrics[spec.metric],
                    threshold=spec.threshold_for(config),
                    comparison_operator=spec.comparison,
                    evaluation_periods=spec.periods,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                )
            )

    def _topic(self, config: FileQueueConfig) -> sns.Topic:
        topic = sns.Topic(self, "Topic", display_name="File queue alarms", enforce_ssl=True)
        if config.alarm_email is not None:
            topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        acknowledge(
            topic,
            "AwsSolutions-SNS2",
            "Alarm notifications carry only alarm names and states; CloudWatch cannot publish to a topic "
            "encrypted with the AWS managed SNS key, and a customer key just for alarms adds cost for no benefit.",
        )
        return topic
