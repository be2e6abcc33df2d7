"""Runs create_pipeline(config) here: TFX LocalDagRunner + Beam DirectRunner.

It only chooses where the pipeline runs, and shows each stage as it starts
and finishes (wall time, cached or not, where its artifacts are), by
listening to the runner's own log records. The components run in this
process: what they log to `imgpipe.progress` (the Trainer's line per epoch)
is shown as it happens, too.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from imgpipe.pipeline.config import Config

_RUNNING = re.compile(r"^Component (\S+) is running\.$")
_FINISHED = re.compile(r"^Component (\S+) is finished\.$")
_NEW_EXECUTION = re.compile(r"^Going to run a new execution (\d+)$")
_CACHED_EXECUTION = re.compile(r"^A cached execution (\d+) is used\.$")


@dataclasses.dataclass
class StageResult:
    name: str
    seconds: float = 0.0
    cached: bool = False
    execution_id: Optional[int] = None
    artifacts: Dict[str, List[str]] = dataclasses.field(default_factory=dict)
    status: str = "running"


@dataclasses.dataclass
class RunResult:
    source: str
    stages: List[StageResult]

    def stage(self, name: str) -> Optional[StageResult]:
        return next((s for s in self.stages if s.name == name), None)


def prepare_source(config: Config) -> str:
    """The concrete data source: built-in datasets are generated on first use."""
    builtin = config.builtin_dataset
    if builtin is None:
        return config.data.source
    if builtin != "quickstart":
        raise ValueError(f"data.source: unknown built-in dataset {builtin!r}; "
                         "the built-in dataset is 'builtin:quickstart'")
    from imgpipe import quickstart_data
    return str(quickstart_data.ensure_quickstart(config.output_root / "datasets" / "quickstart"))


# Beam flags that tell TFX the workers already have the project's packages
# (tfx.utils.dependency_utils.make_beam_dependency_flags skips its sdist then).
DEPENDENCY_FLAGS = ("--extra_package", "--extra_packages", "--setup_file", "--requirements_file",
                    "--sdk_container_image", "--worker_harness_container_image")
LOCAL_SDK_IMAGE = "imgpipe-local-process"


def local_beam_args(beam_args: List[str]) -> List[str]:
    """Beam arguments for a run in this process.

    Without a dependency flag, TFX repackages its whole installation into an
    sdist before every Beam stage (about 1.5 s each), for workers to install.
    The DirectRunner has no such workers: naming an SDK image (which it
    ignores) skips that. Arguments that already name dependencies, or a
    distributed runner, are left alone.
    """
    runner = next((a.split("=", 1)[1] for a in beam_args if a.startswith("--runner=")), "")
    if runner not in ("", "DirectRunner", "direct"):
        return list(beam_args)
    if any(a.split("=", 1)[0] in DEPENDENCY_FLAGS for a in beam_args):
        return list(beam_args)
    return [*beam_args, f"--sdk_container_image={LOCAL_SDK_IMAGE}"]


def output_artifacts(metadata_path: Path, execution_id: int) -> Dict[str, List[str]]:
    """Output key -> artifact URIs of one execution, from ML Metadata."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = str(metadata_path)
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(connection)
    keys = {}
    for event in store.get_events_by_execution_ids([execution_id]):
        if event.type in (metadata_store_pb2.Event.OUTPUT,
                          metadata_store_pb2.Event.DECLARED_OUTPUT):
            keys[event.artifact_id] = event.path.steps[0].key if event.path.steps else "output"
    result: Dict[str, List[str]] = {}
    for artifact in store.get_artifacts_by_id(list(keys)):
        result.setdefault(keys[artifact.id], []).append(artifact.uri)
    return result


class _StageListener(logging.Handler):
    """Turns the LocalDagRunner's log records into stage start/finish events."""

    def __init__(self, metadata_path: Path, echo: Callable[[StageResult, str], None]):
        super().__init__(level=logging.INFO)
        self.metadata_path = metadata_path
        self.echo = echo
        self.stages: List[StageResult] = []
        self._started = 0.0

    @property
    def current(self) -> Optional[StageResult]:
        return self.stages[-1] if self.stages and self.stages[-1].status == "running" else None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed foreign log record is not our business
            return
        if match := _RUNNING.match(message):
            self._started = time.monotonic()
            self.stages.append(StageResult(match.group(1)))
            self.echo(self.stages[-1], "started")
        elif (match := _NEW_EXECUTION.match(message)) and self.current:
            self.current.execution_id = int(match.group(1))
        elif (match := _CACHED_EXECUTION.match(message)) and self.current:
            self.current.execution_id = int(match.group(1))
            self.current.cached = True
        elif (match := _FINISHED.match(message)) and self.current:
            stage = self.current
            stage.seconds = time.monotonic() - self._started
            stage.status = "finished"
            if stage.execution_id is not None:
                stage.artifacts = output_artifacts(self.metadata_path, stage.execution_id)
            self.echo(stage, "finished")

    def fail_current(self) -> Optional[StageResult]:
        stage = self.current
        if stage:
            stage.seconds = time.monotonic() - self._started
            stage.status = "failed"
            self.echo(stage, "failed")
        return stage


class _ProgressListener(logging.Handler):
    """Passes the components' `imgpipe.progress` records on as they are logged."""

    def __init__(self, show: Callable[[str], None]):
        super().__init__(level=logging.INFO)
        self.show = show

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.show(record.getMessage())
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def progress_to(show: Optional[Callable[[str], None]]):
    """While it lasts, `imgpipe.progress` records go to `show` (and nowhere else).

    With `show` None the records are dropped (--quiet); otherwise they stay
    off the other handlers (no second copy with --verbose's root handler).
    """
    from imgpipe.components.progress import LOGGER_NAME
    progress_logger = logging.getLogger(LOGGER_NAME)
    saved = progress_logger.level, progress_logger.propagate
    handler = _ProgressListener(show) if show else logging.NullHandler()
    progress_logger.addHandler(handler)
    progress_logger.setLevel(logging.INFO)
    progress_logger.propagate = False
    try:
        yield
    finally:
        progress_logger.removeHandler(handler)
        progress_logger.setLevel(saved[0])
        progress_logger.propagate = saved[1]


class StageFailed(RuntimeError):
    def __init__(self, stage: Optional[StageResult], error: BaseException, result: RunResult):
        super().__init__(str(error))
        self.stage = stage
        self.error = error
        self.result = result


@contextlib.contextmanager
def output_to_log(log_path: Optional[Path]):
    """Sends fds 1 and 2 (this process and its children) to `log_path`.

    TFX builds and pip-installs the module wheels in subprocesses, and Keras
    prints every epoch; all of it goes to the run's log instead of the
    terminal. Yields a stream on the original terminal for progress lines.
    """
    if log_path is None:
        yield sys.stdout
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        on_fd1 = sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):  # a captured stdout (tests, notebooks)
        on_fd1 = False
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1) if on_fd1 else sys.stdout
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        if on_fd1:
            terminal.close()


def run_local(config: Config, echo: Callable[[StageResult, str, Any], None],
              until: Optional[str] = None, log_path: Optional[Path] = None,
              progress: Optional[Callable[[str, Any], None]] = None) -> RunResult:
    """Runs the pipeline to the end (or to `until`); raises StageFailed.

    `echo(stage, event, stream)` reports progress on `stream`, and
    `progress(message, stream)` the components' progress lines (the
    Trainer's epochs; None drops them). With `log_path`, everything else the
    run prints goes to that file.
    """
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from imgpipe.pipeline.pipeline import create_pipeline

    source = prepare_source(config)
    tfx_pipeline = create_pipeline(config, source=source, until=until,
                                   beam_args=local_beam_args(list(config.pipeline.beam_args)))
    with output_to_log(log_path) as terminal, progress_to(
            (lambda message: progress(message, terminal)) if progress else None):
        listener = _StageListener(config.metadata_path,
                                  lambda stage, event: echo(stage, event, terminal))
        absl_logger = logging.getLogger("absl")
        previous_level = absl_logger.level
        absl_logger.addHandler(listener)
        absl_logger.setLevel(logging.INFO)
        # Transform's libraries call absl.logging.set_verbosity(WARNING) in
        # this process, which would silence the runner's stage records for
        # the rest of the run; the level stays at INFO until the run ends.
        absl_logger.setLevel = lambda level: None
        result = RunResult(source=source, stages=listener.stages)
        try:
            LocalDagRunner().run(tfx_pipeline)
        except BaseException as error:
            raise StageFailed(listener.fail_current(), error, result) from error
        finally:
            del absl_logger.setLevel  # back to logging.Logger.setLevel
            absl_logger.removeHandler(listener)
            absl_logger.setLevel(previous_level)
    return result
