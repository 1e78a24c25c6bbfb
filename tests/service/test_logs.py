"""The service's logs: one JSON line per event, from structlog and from libraries that log through
`logging` alike (procrastinate, psycopg_pool, the bots' SDKs), secrets redacted. Run in a child
process: configure_logging changes the process's root logger."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent(
    """
    import logging
    import structlog
    from inference_service.logs import configure_logging

    configure_logging(json=True)
    try:
        raise RuntimeError("the job broke")
    except RuntimeError:
        logging.getLogger("procrastinate.worker").error("Job ended with status: Error", exc_info=True)
    logging.getLogger("procrastinate.worker").info("Job started")
    logging.getLogger("psycopg.pool").debug("below the level: not printed")
    structlog.get_logger("findlora").info("registration_failed", token="fl_secret_value")
    """
)


def test_library_records_are_one_json_line_each_and_secrets_stay_out() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    events = [json.loads(line) for line in lines]  # every line is JSON: no raw traceback lines
    assert [(e["event"], e["level"]) for e in events] == [
        ("Job ended with status: Error", "error"),
        ("Job started", "info"),
        ("registration_failed", "info"),
    ]
    assert events[0]["logger"] == "procrastinate.worker"
    assert "RuntimeError: the job broke" in events[0]["exception"]
    assert events[2]["token"] == "[redacted]"
    assert "fl_secret_value" not in done.stderr
