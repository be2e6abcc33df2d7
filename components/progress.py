"""Progress lines of long stages, for the console.

Components log them to the `imgpipe.progress` logger. A local run (`imgpipe
run`, where executors run in the CLI's own process) shows that logger's
records on the console even while every other library log goes to the run's
log file (pipeline/local_runner.py); on Kubeflow they go to the pod's log.
"""
from __future__ import annotations

import logging

LOGGER_NAME = "imgpipe.progress"
logger = logging.getLogger(LOGGER_NAME)
# INFO gets through whatever the root logger's level is; where the records go
# is up to the handlers (the local runner's, or the root's on Kubeflow).
logger.setLevel(logging.INFO)


def report(message: str) -> None:
    """One progress line (any stage may call it)."""
    logger.info(message)


class Counter:
    """Reports `what` every `every` items, e.g. "ImageExampleGen: 10,000 images decoded"."""

    def __init__(self, what: str, every: int = 5_000, emit=None):
        self.what, self.every, self.count = what, every, 0
        self.emit = emit or report      # a command's console instead of the logger

    def add(self, items: int) -> None:
        before = self.count // self.every
        self.count += items
        if self.count // self.every > before:
            self.emit(self.what.format(count=self.count))
