"""Registry store functions: engines, migrations, versions, champion moves.

Concurrency: version numbers are `max(version) + 1` inside a transaction that
holds the model name's write lock — SQLite: `BEGIN IMMEDIATE` (one writer at a
time, WAL so readers are not blocked, a busy timeout instead of "database is
locked"); PostgreSQL: a transaction-scoped advisory lock per model name. So
concurrent pushers get unique, gap-free versions, and the partial unique
index lets the database itself refuse a second champion. Read-only functions
use `_read_session`/`_read_engine`: a plain deferred BEGIN on SQLite, so they
read a snapshot instead of queueing for the write lock.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from sqlalchemy import Engine, create_engine, event, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session

from imgpipe.registry.models import CHAMPION, STATUSES, ModelVersion

# Secrets stay out of pipeline definitions: components read the URL from
# this variable first, then fall back to the configured one.
REGISTRY_URL_ENV = "IMGPIPE_REGISTRY_URL"
_log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 60
# A write that still finds the lock taken after the busy timeout is retried
# this many times before it is reported (a writer stuck elsewhere).
LOCK_RETRIES = 2
# Execution option marking read-only connections (see engine_for's "begin").
_READ_ONLY = "imgpipe_read_only"
# Fixed advisory-lock key text for schema migrations on PostgreSQL (model
# name locks are "imgpipe.model_registry:<name>", so they cannot clash).
_MIGRATION_LOCK = "imgpipe.model_registry.schema"


class RegistryError(RuntimeError):
    """A registry operation that cannot be done; the message says why."""


def resolve_url(configured: str) -> str:
    url = os.environ.get(REGISTRY_URL_ENV) or configured
    if not url:
        raise RegistryError(f"no registry configured: set {REGISTRY_URL_ENV} in this "
                            "environment (on a cluster, from a secret) or registry.url")
    return url


def has_password(url: str) -> bool:
    try:
        return make_url(url).password is not None
    except ArgumentError:
        return urlsplit(url).password is not None


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, for output and logs."""
    try:
        return mask_text(make_url(url).render_as_string(hide_password=True))
    except (ArgumentError, ValueError):
        return mask_text(url)


# scheme://user:password@ anywhere in a text; the password runs to the last
# '@' before the host (a stray unencoded '@' in it is masked too).
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*):[^\s/'\"]*@")


def mask_text(text: str) -> str:
    """`text` (an error message, a log line) with every URL's password replaced by ***."""
    return _URL_CREDENTIALS.sub(r"\1:***@", text)


def describe_error(error: BaseException) -> str:
    """One line for an exception from a database, MLflow or the network, passwords masked."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return mask_text(f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": "))


@contextlib.contextmanager
def masked_errors(what: str):
    """Re-raises any error inside as one RegistryError line, `what: <error>`,
    passwords masked and without the chained original (whose text, e.g.
    MLflow's, may carry a URL in clear)."""
    try:
        yield
    except RegistryError as error:
        raise RegistryError(mask_text(str(error))) from None
    except Exception as error:  # noqa: BLE001 - re-raised, masked
        raise RegistryError(f"{what}: {describe_error(error)}") from None


def _parse_url(url: str):
    """The SQLAlchemy URL, or a RegistryError naming the setting (URL masked)."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as error:
        raise RegistryError(
            f"the registry URL {mask_url(url)!r} ({REGISTRY_URL_ENV} or registry.url) "
            f"cannot be parsed: {describe_error(error)}; expected e.g. sqlite:////path/registry.db "
            "or postgresql+psycopg2://user@host/db") from None


def create_private_sqlite(database: str) -> None:
    """A SQLite file this code creates is owner-only (0600), whatever the umask:
    registries and prediction logs name users' data and hold their paths.
    SQLite gives its journal files the database's mode. An existing file is
    left as its owner set it."""
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


@functools.lru_cache(maxsize=None)
def engine_for(url: str) -> Engine:
    """One engine per URL and process, with the locking described above."""
    parsed = _parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        create_private_sqlite(parsed.database)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        # pysqlite's own transaction handling defers BEGIN; take it over so
        # write transactions start with BEGIN IMMEDIATE (the write lock).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        # Writers lock up front: a deferred read-then-write transaction can
        # fail with SQLITE_BUSY instead of waiting. Readers need no lock.
        if connection.get_execution_options().get(_READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


# -- migrations ---------------------------------------------------------------

def _alembic_config(connection):
    from alembic.config import Config
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _lock_schema(connection) -> None:
    """Serialises migrations: on an empty PostgreSQL database, concurrent
    auto-migrating pushers would otherwise race on CREATE TABLE (SQLite's
    BEGIN IMMEDIATE already serialises them). Held until the transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                           {"key": _MIGRATION_LOCK})


def migrate(url: str, revision: str = "head") -> Optional[str]:
    """Upgrades the registry schema; returns the revision it is at."""
    from alembic import command
    with engine_for(url).begin() as connection:
        _lock_schema(connection)
        command.upgrade(_alembic_config(connection), revision)
    return current_revision(url)


def downgrade(url: str, revision: str) -> Optional[str]:
    from alembic import command
    with engine_for(url).begin() as connection:
        _lock_schema(connection)
        command.downgrade(_alembic_config(connection), revision)
    return current_revision(url)


def head_revision() -> str:
    from alembic.script import ScriptDirectory
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current_revision(url: str) -> Optional[str]:
    from alembic.runtime.migration import MigrationContext
    with _read_engine(engine_for(url)).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def require_schema(url: str) -> Engine:
    """The engine, once the database is at the code's schema revision."""
    parsed = _parse_url(url)
    if (parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
            and not Path(parsed.database).exists()):
        raise RegistryError(f"no registry at {mask_url(url)} yet: the first push creates it "
                            "(or run `imgpipe registry migrate`)")
    try:
        revision = current_revision(url)
    except Exception as error:  # noqa: BLE001 - connection problems are reported as such
        raise RegistryError(f"cannot reach the registry at {mask_url(url)}: "
                            f"{describe_error(error)}") from None
    if revision != head_revision():
        raise RegistryError(f"the registry at {mask_url(url)} is at schema revision "
                            f"{revision or 'none'}, this code needs {head_revision()}; "
                            "run `imgpipe registry migrate`")
    return engine_for(url)


# -- writes -------------------------------------------------------------------

def _is_lock_timeout(error: OperationalError) -> bool:
    # SQLite: busy timeout over; PostgreSQL: lock_timeout (55P03) if a DBA set one.
    return ("database is locked" in str(error)
            or getattr(error.orig, "pgcode", None) == "55P03")


def _retry_locked(write: Callable) -> Callable:
    """Retries a write whose lock wait timed out (LOCK_RETRIES times), then
    reports it as a RegistryError instead of an OperationalError traceback."""
    @functools.wraps(write)
    def retrying(engine: Engine, *args, **kwargs):
        for attempt in range(LOCK_RETRIES + 1):
            try:
                return write(engine, *args, **kwargs)
            except OperationalError as error:
                if not _is_lock_timeout(error):
                    raise
                _log.warning("the registry at %s is locked by another writer; %s",
                             mask_url(str(engine.url)),
                             "retrying" if attempt < LOCK_RETRIES else "giving up")
            time.sleep(min(1.0, 0.1 * (attempt + 1)))
        raise RegistryError(
            f"the registry at {mask_url(str(engine.url))} stayed locked by another writer "
            f"({LOCK_RETRIES + 1} waits of up to {SQLITE_BUSY_TIMEOUT_S} s on SQLite); "
            "another push or promotion is stuck: try again once it finished") from None
    return retrying


def _lock_model_name(session: Session, model_name: str) -> None:
    """Serialises writers of one model name (SQLite already holds its write lock)."""
    if session.bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"),
                        {"name": f"imgpipe.model_registry:{model_name}"})


def _session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)


def _read_engine(engine: Engine) -> Engine:
    """The same engine (and pool) whose transactions do not take SQLite's write lock."""
    return engine.execution_options(**{_READ_ONLY: True})


def _read_session(engine: Engine) -> Session:
    return _session(_read_engine(engine))


@dataclasses.dataclass
class NewVersion:
    """A row to register; the store assigns `version` and `artifact_path`."""
    model_uid: str
    model_name: str
    architecture_type: str
    val_accuracy: float
    training_date: dt.datetime
    per_class_f1: Dict[str, float]
    blessed: bool
    data_fingerprint: str
    schema_hash: str
    training_config: Dict[str, Any]
    augmentation_config: Dict[str, Any]
    library_versions: Dict[str, str]
    pipeline_run_id: Optional[str] = None
    serving_accuracy: Optional[float] = None
    parity_accuracy_gap: Optional[float] = None
    parity_disagreement: Optional[float] = None
    serving_baseline: Optional[Dict[str, Any]] = None
    statistics_path: Optional[str] = None
    parameter_count: Optional[int] = None
    backbone: Optional[str] = None
    weights_source: Optional[str] = None
    weights_sha256: Optional[str] = None
    preprocessing_contract: Optional[Dict[str, Any]] = None
    fuzz_report: Optional[List[Dict[str, Any]]] = None


@_retry_locked
def register(engine: Engine, new: NewVersion,
             artifact_path_for: Callable[[int], str]) -> Tuple[ModelVersion, bool]:
    """Inserts the row with the next version, or returns the existing one.

    Idempotent on model_uid: (row, False) when the model is already there.
    """
    if not new.blessed:
        raise RegistryError(f"{new.model_uid} is not blessed; only blessed models are registered")
    with _session(engine) as session, session.begin():
        _lock_model_name(session, new.model_name)
        existing = session.scalar(select(ModelVersion).where(ModelVersion.model_uid == new.model_uid))
        if existing is not None:
            return existing, False
        latest = session.scalar(select(func.max(ModelVersion.version))
                                .where(ModelVersion.model_name == new.model_name))
        version = (latest or 0) + 1
        row = ModelVersion(**dataclasses.asdict(new), version=version,
                           artifact_path=artifact_path_for(version), status="registered")
        session.add(row)
    return row, True


@_retry_locked
def attach_mlflow(engine: Engine, model_uid: str, run_id: str, model_version: int) -> None:
    with _session(engine) as session, session.begin():
        session.execute(update(ModelVersion).where(ModelVersion.model_uid == model_uid)
                        .values(mlflow_run_id=run_id, mlflow_model_version=model_version))


_UNSET = object()


@_retry_locked
def promote(engine: Engine, model_uid: str, expected_champion: Any = _UNSET,
            check: Optional[Callable[[ModelVersion], None]] = None) -> Tuple[bool, str]:
    """Makes the model its name's champion; the previous champion is archived.

    With `expected_champion` (a uid or None; the pusher's automatic
    promotion) it promotes only a `registered` row — never one that was
    champion before and archived or rolled back — and only if that is still
    the champion: a pusher evaluated against it; someone else may have moved
    it since. Without it (`imgpipe registry promote`) any blessed row is
    promoted. `check(row)` runs inside the transaction, under the model
    name's lock, before the champion moves (publish.promotable: the
    SavedModel is there); if it raises, nothing changes. Keep network calls
    out of it: MLflow's alias follows after the commit (publish.follow_champion).
    Returns (whether the model is champion afterwards, why not). Idempotent.
    """
    with _session(engine) as session, session.begin():
        row = _get(session, model_uid)
        _lock_model_name(session, row.model_name)
        session.refresh(row)  # its status as of holding the lock
        current = session.scalar(select(ModelVersion).where(
            ModelVersion.model_name == row.model_name, ModelVersion.status == CHAMPION))
        if current is not None and current.model_uid == model_uid:
            return True, ""
        if expected_champion is not _UNSET:
            if row.status != "registered":
                return False, (f"not promoted: {row.status} (automatic promotion takes "
                               "registered versions only)")
            current_uid = current.model_uid if current is not None else None
            if expected_champion != current_uid:
                return False, ("not promoted: the champion changed after this model was "
                               f"evaluated (against {expected_champion or 'none'}; it is "
                               f"{current_uid or 'none'} now)")
        if not row.blessed:
            raise RegistryError(f"{model_uid} is not blessed and cannot be champion")
        if check is not None:
            check(row)
        _move_champion(session, current, row, previous_status="archived")
    return True, ""


@_retry_locked
def rollback(engine: Engine, model_name: str, to_uid: Optional[str] = None,
             check: Optional[Callable[[ModelVersion], None]] = None
             ) -> Tuple[ModelVersion, ModelVersion]:
    """Marks the champion rolled_back and restores `to_uid` or the previous champion.

    `check(new champion)` as in `promote`. Returns (rolled back row, new
    champion row).
    """
    with _session(engine) as session, session.begin():
        _lock_model_name(session, model_name)
        current = session.scalar(select(ModelVersion).where(
            ModelVersion.model_name == model_name, ModelVersion.status == CHAMPION))
        if current is None:
            raise RegistryError(f"model {model_name!r} has no champion to roll back")
        if to_uid is not None:
            target = _get(session, to_uid)
            if target.model_name != model_name:
                raise RegistryError(f"{to_uid} is a version of {target.model_name!r}, "
                                    f"not of {model_name!r}")
            if target.model_uid == current.model_uid:
                raise RegistryError(f"{to_uid} is already the champion")
        else:
            # The previous champion: the most recently promoted one that was
            # archived (not itself rolled back).
            target = session.scalar(
                select(ModelVersion)
                .where(ModelVersion.model_name == model_name, ModelVersion.status == "archived",
                       ModelVersion.promoted_at.is_not(None))
                .order_by(ModelVersion.promoted_at.desc(), ModelVersion.version.desc()).limit(1))
            if target is None:
                raise RegistryError(f"model {model_name!r} has no earlier champion to roll back "
                                    "to; name one with --to UID")
        if check is not None:
            check(target)
        _move_champion(session, current, target, previous_status="rolled_back")
    return current, target


def _move_champion(session: Session, current: Optional[ModelVersion], target: ModelVersion,
                   previous_status: str) -> None:
    # Two statements in this order: the one-champion index is never violated.
    now = dt.datetime.now(dt.timezone.utc)
    if current is not None:
        session.execute(update(ModelVersion).where(ModelVersion.id == current.id)
                        .values(status=previous_status))
        current.status = previous_status
    session.execute(update(ModelVersion).where(ModelVersion.id == target.id)
                    .values(status=CHAMPION, promoted_at=now))
    target.status, target.promoted_at = CHAMPION, now


# -- reads --------------------------------------------------------------------

def _get(session: Session, model_uid: str) -> ModelVersion:
    row = session.scalar(select(ModelVersion).where(ModelVersion.model_uid == model_uid))
    if row is None:
        raise RegistryError(f"no model version with uid {model_uid!r} in the registry")
    return row


def get(engine: Engine, model_uid: str) -> ModelVersion:
    with _read_session(engine) as session:
        return _get(session, model_uid)


def champion(engine: Engine, model_name: str) -> Optional[ModelVersion]:
    with _read_session(engine) as session:
        return session.scalar(select(ModelVersion).where(
            ModelVersion.model_name == model_name, ModelVersion.status == CHAMPION))


def version_of(engine: Engine, model_name: str, version: int) -> ModelVersion:
    with _read_session(engine) as session:
        row = session.scalar(select(ModelVersion).where(
            ModelVersion.model_name == model_name, ModelVersion.version == version))
    if row is None:
        raise RegistryError(f"model {model_name!r} has no version {version}")
    return row


def list_versions(engine: Engine, model_name: Optional[str] = None, status: Optional[str] = None,
                  min_accuracy: Optional[float] = None) -> List[ModelVersion]:
    """Filtered rows, newest first; every filter is a bound parameter."""
    if status is not None and status not in STATUSES:
        raise RegistryError(f"unknown status {status!r}; statuses are {', '.join(STATUSES)}")
    query = select(ModelVersion)
    if model_name is not None:
        query = query.where(ModelVersion.model_name == model_name)
    if status is not None:
        query = query.where(ModelVersion.status == status)
    if min_accuracy is not None:
        query = query.where(ModelVersion.val_accuracy >= min_accuracy)
    query = query.order_by(ModelVersion.model_name, ModelVersion.version.desc())
    with _read_session(engine) as session:
        return list(session.scalars(query))
