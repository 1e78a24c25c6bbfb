"""Bot metrics (Prometheus). Each bot is its own scrape target, so no platform label is needed."""

from __future__ import annotations

from prometheus_client import Counter

BOT_COMMANDS = Counter("findlora_bot_commands_total", "Commands and interactions completed", ["command"])
BOT_ERRORS = Counter("findlora_bot_errors_total", "Failures shown to users, by kind", ["kind"])
