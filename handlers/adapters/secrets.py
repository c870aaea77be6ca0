"""Secrets Manager: the database URL for Lambda, where it must not sit in plain environment variables."""

from __future__ import annotations

from handlers.errors import ConfigError, ErrorCode, TransientError


def fetch_secret(arn: str) -> str:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = boto3.client("secretsmanager").get_secret_value(SecretId=arn)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        if code in {"ResourceNotFoundException", "AccessDeniedException", "AccessDenied", "DecryptionFailure"}:
            raise ConfigError(f"cannot read FILEQUEUE_DATABASE_SECRET_ARN {arn}: {code}") from exc
        raise TransientError(f"Secrets Manager failed: {code}", code=ErrorCode.AWS_UNAVAILABLE) from exc
    except BotoCoreError as exc:
        raise TransientError(
            f"Secrets Manager failed: {type(exc).__name__}: {exc}", code=ErrorCode.AWS_UNAVAILABLE
        ) from exc
    secret = response.get("SecretString")
    if not secret:
        raise ConfigError(f"the secret {arn} (FILEQUEUE_DATABASE_SECRET_ARN) has no SecretString")
    return str(secret)
