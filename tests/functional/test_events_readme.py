"""events/README.md's upload table: each shipped event, after its upload, stores its document."""

from __future__ import annotations

import re
import shlex

import pytest

from handlers.cli import main
from tests.paths import REPO_ROOT, SAMPLE_EVENTS
from tests.rows import rows

UPLOAD_ROW = re.compile(r"^\| (?P<events>(?:`[^`]+\.json`(?:, )?)+) \| `aws s3 cp (?P<command>[^`]+)` \|$")


def _uploads() -> list[tuple[str, str, str]]:
    """(event file, local file, key) for every event the README says needs an upload."""
    found: list[tuple[str, str, str]] = []
    for line in (SAMPLE_EVENTS / "README.md").read_text(encoding="utf-8").splitlines():
        if match := UPLOAD_ROW.match(line):
            source, target = shlex.split(match["command"])
            key = target.removeprefix("s3://filequeue-demo/")
            found.extend((event, source, key) for event in re.findall(r"`([^`]+\.json)`", match["events"]))
    return found


def test_the_table_covers_every_event_that_names_an_object():
    named = {event for event, _, _ in _uploads()}
    assert named == {
        "s3-put.json",
        "s3-put-newer.json",
        "sns-wrapped-s3-put.json",
        "sns-raw-s3-put.json",
        "eventbridge-object-created.json",
        "s3-put-pdf.json",
        "s3-multipart.json",
        "s3-copy.json",
        "s3-put-encoded-key.json",
    }


@pytest.mark.parametrize("upload", _uploads(), ids=str)
def test_after_its_upload_the_event_stores_the_document(upload, s3, handler_env, capsys):
    event, source, key = upload
    s3.create_bucket(Bucket="filequeue-demo")
    s3.put_object(Bucket="filequeue-demo", Key=key, Body=(REPO_ROOT / source).read_bytes())
    assert main(["invoke", "--event", str(SAMPLE_EVENTS / event)]) == 0
    assert capsys.readouterr().out.strip() == '{"batchItemFailures": []}'
    stored = rows(handler_env, "SELECT status FROM documents WHERE bucket = 'filequeue-demo' AND key = %s", key)
    assert stored == [("ready",)], f"{event} after uploading {source} to {key}"
