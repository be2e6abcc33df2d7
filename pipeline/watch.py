"""`imgpipe watch`: retraining that starts itself.

Each poll looks for a reason to run the pipeline — a data span newer than
the last one seen (data.source's `{SPAN}` pattern), or an `imgpipe monitor`
alert on the champion — and runs it locally or submits it to Kubeflow. One
run at a time (runs are waited for, and a lock file keeps a second watcher
of the same output root out); after a triggered run, triggers inside the
cooldown are logged and skipped. Every trigger and skip is a line of
`<output root>/watch/events.jsonl` and of the console.

The first poll only records the newest span as seen: starting a watcher
does not retrain on data that was already there.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import json
import os
import re
from pathlib import Path
from typing import Callable, List, Optional

SPAN_TOKEN = "{SPAN}"


class WatchError(RuntimeError):
    """The watcher cannot start or go on; the message says why."""


@dataclasses.dataclass
class State:
    last_span: Optional[int] = None
    last_run_at: Optional[str] = None      # ISO time of the last triggered run's start

    @classmethod
    def load(cls, path: Path) -> "State":
        return cls(**json.loads(path.read_text())) if path.exists() else cls()

    def save(self, path: Path) -> None:
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(dataclasses.asdict(self)))
        partial.replace(path)                 # never half-written


def spans(pattern: str) -> List[int]:
    """The span numbers present under a `{SPAN}` pattern (local or tf.io.gfile paths)."""
    if SPAN_TOKEN not in pattern:
        return []
    import tensorflow as tf
    head, tail = pattern.split(SPAN_TOKEN, 1)
    matcher = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail.rstrip("/")) + r"/?$")
    found = {int(m.group(1)) for m in (matcher.match(p) for p in
                                       tf.io.gfile.glob(pattern.replace(SPAN_TOKEN, "*"))) if m}
    return sorted(found)


def reasons(state: State, newest_span: Optional[int], alerts: List[str]) -> List[str]:
    found = []
    if newest_span is not None and state.last_span is not None and newest_span > state.last_span:
        found.append(f"new data: span {newest_span} (last seen {state.last_span})")
    found += [f"monitor alert: {alert}" for alert in alerts]
    return found


def in_cooldown(state: State, now: dt.datetime, cooldown_seconds: float) -> Optional[float]:
    """Seconds of cooldown left after the last triggered run, or None."""
    if state.last_run_at is None:
        return None
    left = cooldown_seconds - (now - dt.datetime.fromisoformat(state.last_run_at)).total_seconds()
    return left if left > 0 else None


@dataclasses.dataclass
class Watcher:
    """One poll at a time; `run(span, reason)` runs the pipeline and returns its exit code."""
    folder: Path
    cooldown_seconds: float
    newest_span: Callable[[], Optional[int]]
    alerts: Callable[[], List[str]]
    run: Callable[[Optional[int], str], int]
    echo: Callable[[str], None] = print

    def log(self, event: str, **details) -> None:
        record = {"at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  "event": event, **details}
        with open(self.folder / "events.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        self.echo(f"[watch] {record['at']} {event}"
                  + "".join(f"; {k}: {v}" for k, v in details.items()))

    def poll(self, now: Optional[dt.datetime] = None) -> Optional[str]:
        """Checks once; runs (and waits for) the pipeline when there is a reason.
        Returns what happened: "run", "skipped" or None."""
        now = now or dt.datetime.now(dt.timezone.utc)
        path = self.folder / "state.json"
        state, span = State.load(path), self.newest_span()
        if state.last_span is None and span is not None:
            state.last_span = span                           # the first poll's baseline
            state.save(path)
            self.log("watching", newest_span=span)
        found = reasons(state, span, self.alerts())
        if not found:
            return None
        left = in_cooldown(state, now, self.cooldown_seconds)
        if left is not None:
            self.log("skipped", reason="; ".join(found), cooldown_left_s=round(left))
            return "skipped"
        state.last_run_at = now.isoformat()
        if span is not None:
            state.last_span = max(span, state.last_span or span)
        state.save(path)                                     # before the run: no retrain storm
        self.log("trigger", reason="; ".join(found), span=span)
        code = self.run(span, "; ".join(found))
        self.log("run finished" if code == 0 else "run failed", exit_code=code)
        return "run"


class Lock:
    """An exclusive lock on `<folder>/lock`: one watcher per output root."""

    def __init__(self, folder: Path):
        self.path = folder / "lock"
        self._handle = None

    def __enter__(self) -> "Lock":
        self._handle = open(self.path, "a+")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.seek(0)
            holder = self._handle.read().strip() or "?"
            self._handle.close()
            raise WatchError(f"another imgpipe watch (pid {holder}) is watching this output root "
                             f"({self.path}); one at a time") from None
        self._handle.truncate(0)
        self._handle.write(str(os.getpid()))
        self._handle.flush()
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
