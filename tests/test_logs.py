"""Event names of log lines: stable, derived from the format string (no processes)."""

import json
import logging

from corral.logs import JSONFormatter, event_name


def test_event_names_come_from_the_format_string_not_the_values():
    assert event_name("master: worker %d ready (%.2fs)") == "master.worker_ready"
    assert event_name("worker %d ready (%s, %s)") == "worker.ready"
    assert event_name("master: %s: reloading %d workers (generation %d), new ones first") == "master.reloading_workers"
    assert event_name("master: SIGTTIN: workers %d -> %d") == "master.sigttin_workers"
    assert event_name("%s: WebSocket ping unanswered for %.0fs; closing") == "websocket.ping_unanswered_for"
    assert event_name("%s: %d %s") == "http.error_response"
    assert event_name(RuntimeError("x")) == "server.message"


def test_json_formatter():
    record = logging.LogRecord("corral.error", logging.WARNING, __file__, 1, "worker %d: accepting again", (7,), None)
    entry = json.loads(JSONFormatter().format(record))
    assert entry["event"] == "worker.accepting_again"
    assert entry["message"] == "worker 7: accepting again"
    assert entry["level"] == "warning"
    record.event = "custom.event"
    assert json.loads(JSONFormatter().format(record))["event"] == "custom.event"
