"""Log lines: repeated warnings aggregated (issue 16, defect 4), secrets redacted whoever logs
them, JSON lines with the request context."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from labelbridge.model.report import ConversionReport
from labelbridge.service import logs
from labelbridge.service.cli.common import setup_logging


@pytest.fixture()
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    for h in handlers:
        root.removeHandler(h)
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def declared_losses(n: int) -> None:
    """What delivery does per annotation: a new report, the same declared loss, another row."""
    for i in range(n):
        ConversionReport().loss("relationship", "ground-truth imports cannot carry "
                                "relationships", "drives", f"cdatarow{i:017d}")


def test_the_same_declared_loss_for_every_annotation_is_one_line(restore_logging, capfd):
    setup_logging("INFO")
    declared_losses(13_048)
    lines = [line for line in capfd.readouterr().err.splitlines() if "lost in conversion" in line]
    assert len(lines) == 1, f"{len(lines)} lines for one repeated loss"


def test_held_back_repeats_are_counted_when_the_window_ends(restore_logging):
    out = io.StringIO()
    aggregator = logs.configure("INFO", stream=out)
    declared_losses(500)
    logging.getLogger("other").warning("another warning")
    aggregator.flush()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert "499 more like this" in lines[2] and "cdatarow00000000000000499" in lines[2]


def test_different_warnings_and_info_lines_are_not_aggregated(restore_logging):
    out = io.StringIO()
    logs.configure("INFO", stream=out)
    log = logging.getLogger("x")
    for i in range(3):
        log.info("webhook %d accepted", i)
    log.warning("outbox is slow")
    log.warning("delivery failed: %s", "rate limited")
    assert len(out.getvalue().splitlines()) == 5


def test_a_window_later_the_same_warning_appears_again(restore_logging, monkeypatch):
    out = io.StringIO()
    aggregator = logs.configure("INFO", stream=out)
    clock = [1000.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: clock[0])
    log = logging.getLogger("x")
    log.warning("annotation %d: not sent", 1)
    log.warning("annotation %d: not sent", 2)
    clock[0] += aggregator.window_s + 1
    log.warning("annotation %d: not sent", 3)
    lines = out.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        "annotation 1: not sent",
        "1 more like this in the last 61 s, the last: annotation 2: not sent",
        "annotation 3: not sent"]


def test_secret_values_are_redacted_in_messages_arguments_and_tracebacks(restore_logging):
    out = io.StringIO()
    logs.configure("DEBUG", "json", ["s3cret-token", "lb-key-0000"], stream=out)
    log = logging.getLogger("x")
    log.info("header was %s", "s3cret-token")
    try:
        raise RuntimeError("key lb-key-0000 refused")
    except RuntimeError:
        log.exception("failed with %r", {"key": "lb-key-0000"})
    text = out.getvalue()
    assert "s3cret-token" not in text and "lb-key-0000" not in text
    first, second = [orjson.loads(line) for line in text.splitlines()]
    assert first["msg"] == "header was <redacted>"
    assert "<redacted> refused" in second["exc"]


def test_json_lines_carry_the_bound_context(restore_logging):
    out = io.StringIO()
    logs.configure("INFO", "json", stream=out)
    token = logs.context.set({"request_id": "r-1"})
    try:
        logs.bind(project=3, task=14, annotation=None)
        logging.getLogger("labelbridge.x").info("hello")
    finally:
        logs.context.reset(token)
    logging.getLogger("labelbridge.x").info("outside")
    inside, outside = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert inside["request_id"] == "r-1" and inside["project"] == 3 and inside["task"] == 14
    assert "annotation" not in inside and inside["level"] == "INFO" and inside["msg"] == "hello"
    assert "request_id" not in outside
