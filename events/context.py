"""Cross-cutting: the correlation id that follows a command from the request into every worker's
logs, and the JSON log lines that carry it. Every layer may import this module."""

import contextvars
import json
import logging
import logging.config

# The correlation id of the request or message being handled; set by the API middleware and by the
# consumers from the message's correlation id, so one id follows a command into every worker's logs.
correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)

_make_record = logging.getLogRecordFactory()


def _record_with_correlation(*args, **kwargs) -> logging.LogRecord:
    record = _make_record(*args, **kwargs)
    record.correlation_id = correlation_id.get()  # stamped when logged, not when formatted
    return record


logging.setLogRecordFactory(_record_with_correlation)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
                 "logger": record.name, "pid": record.process, "message": record.getMessage()}
        if cid := getattr(record, "correlation_id", None):
            entry["correlation_id"] = cid
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def logging_config(level: str = "INFO", fmt: str = "json") -> dict:
    """The logging of every process, as a dictConfig: uvicorn applies it in each of its worker
    processes too (`orders api --workers N`), which start with logging unconfigured."""
    formatter = {"()": JsonFormatter} if fmt == "json" else \
        {"format": "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"}
    return {
        "version": 1,
        "disable_existing_loggers": False,  # loggers made at import time (every module's) keep working
        "formatters": {"main": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
    }


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    logging.config.dictConfig(logging_config(level, fmt))
