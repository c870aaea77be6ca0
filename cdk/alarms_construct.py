from __future__ import annotations

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
        self._alarm(
            "DeadLetters",
            "Messages reached the dead-letter queue: a file failed maxReceiveCount times. "
            "Inspect them, fix the cause, then redrive.",
            dead_letters,
            threshold=0,
        )
        self._alarm(
            "OldestMessage",
            "The oldest message has waited too long: consumers are stuck, failing or too few "
            "(messages are lost when they outlive the queue's retention).",
            oldest_message,
            threshold=config.oldest_message_alarm_seconds,
            evaluation_periods=5,
        )
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
            self._worker_alarms(config.worker_log_group_name)
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
        self._alarm(
            "FunctionErrors",
            "The consumer function failed whole invocations (crash, timeout or out of memory); "
            "every message of those batches is retried.",
            errors,
            threshold=0,
        )
        self._alarm(
            "FunctionThrottles",
            "The consumer function was throttled; throttled polls use up receives and can "
            "dead-letter healthy messages.",
            throttles,
            threshold=0,
        )
        self._alarm(
            "FunctionDurationNearTimeout",
            f"An invocation used more than {DURATION_ALARM_SHARE:.0%} of the function timeout: records are "
            "being deferred for lack of time, or the next slow file will hit the timeout and fail its batch.",
            duration,
            threshold=DURATION_ALARM_SHARE * config.function_timeout_seconds * 1000,
        )
        self._alarm(
            "LambdaBatchItemFailures",
            "The Lambda consumer reported records as failed (transient errors, deferred records or bodies "
            "that are no S3 event); SQS redelivers them until maxReceiveCount.",
            failures,
            threshold=0,
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Lambda consumer", left=[errors, throttles, failures], right=[duration])
        )

    def _worker_alarms(self, log_group_name: str) -> None:
        log_group = logs.LogGroup.from_log_group_name(self, "WorkerLogGroup", log_group_name)
        failures = self._batch_item_failures("Worker", log_group)
        self._alarm(
            "WorkerBatchItemFailures",
            "The EKS workers reported records as failed (transient errors, deferred records or bodies that "
            "are no S3 event); SQS redelivers them until maxReceiveCount.",
            failures,
            threshold=0,
        )
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

    def _alarm(
        self,
        construct_id: str,
        description: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        evaluation_periods: int = 1,
    ) -> None:
        self.alarms.append(
            cloudwatch.Alarm(
                self,
                construct_id,
                alarm_description=description,
                metric=metric,
                threshold=threshold,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=evaluation_periods,
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
