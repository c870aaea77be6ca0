from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
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


class AlarmsConstruct(Construct):
    """Alarms for dead letters, a stuck queue and a failing or throttled consumer; optionally sent to SNS."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FileQueueConfig,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        function: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = self._topic(config) if config.wants_alarm_topic else None
        self.dead_letters = cloudwatch.Alarm(
            self,
            "DeadLetters",
            alarm_description="Messages reached the dead-letter queue: a file failed maxReceiveCount times. "
            "Inspect them, fix the cause, then redrive.",
            metric=dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=QUEUE_PERIOD, statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.oldest_message = cloudwatch.Alarm(
            self,
            "OldestMessage",
            alarm_description="The oldest message has waited too long: consumers are stuck, failing or too few "
            "(messages are lost when they outlive the queue's retention).",
            metric=queue.metric_approximate_age_of_oldest_message(
                period=QUEUE_PERIOD, statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=config.oldest_message_alarm_seconds,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=5,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.function_errors = cloudwatch.Alarm(
            self,
            "FunctionErrors",
            alarm_description="The consumer function failed whole invocations (crash, timeout or out of memory); "
            "every message of those batches is retried.",
            metric=function.metric_errors(period=FUNCTION_PERIOD, statistic=cloudwatch.Stats.SUM),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.function_throttles = cloudwatch.Alarm(
            self,
            "FunctionThrottles",
            alarm_description="The consumer function was throttled; throttled polls use up receives and can "
            "dead-letter healthy messages.",
            metric=function.metric_throttles(period=FUNCTION_PERIOD, statistic=cloudwatch.Stats.SUM),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        if self.topic is not None:
            action = cloudwatch_actions.SnsAction(self.topic)
            for alarm in self.alarms:
                alarm.add_alarm_action(action)
                alarm.add_ok_action(action)

    @property
    def alarms(self) -> tuple[cloudwatch.Alarm, ...]:
        return (self.dead_letters, self.oldest_message, self.function_errors, self.function_throttles)

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
