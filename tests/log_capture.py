"""Capture the project logger's records in a test, whatever `propagate` other tests left it with."""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import utils


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def captured_log(level: int = logging.DEBUG) -> Iterator[list[logging.LogRecord]]:
    """Records of `utils.logger` at `level` and above, as a live list."""
    handler = _ListHandler()
    old = utils.logger.level
    utils.logger.addHandler(handler)
    utils.logger.setLevel(level)
    try:
        yield handler.records
    finally:
        utils.logger.removeHandler(handler)
        utils.logger.setLevel(old)


def messages(records: list[logging.LogRecord], level: int = logging.DEBUG) -> list[str]:
    return [r.getMessage() for r in list(records) if r.levelno >= level]
