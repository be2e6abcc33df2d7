"""The registry's DDL as plain SQL, for sql/ (people read and apply it by hand).

`python -m imgpipe.registry.ddl` rewrites sql/schema.postgresql.sql and
sql/schema.sqlite.sql; a test fails when they differ from the models.
"""
from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from imgpipe.registry.models import Base
from imgpipe.registry.store import head_revision

DIALECTS = {"postgresql": postgresql.dialect(), "sqlite": sqlite.dialect()}


def render(dialect_name: str) -> str:
    dialect = DIALECTS[dialect_name]
    header = (f"-- imgpipe model registry, {dialect_name} DDL (schema revision {head_revision()}).\n"
              "-- Generated from imgpipe/registry/models.py by `python -m imgpipe.registry.ddl`;\n"
              "-- `imgpipe registry migrate` (Alembic) creates the same schema and records\n"
              "-- its revision, which is what the pipeline checks.\n")
    statements = []
    for table in Base.metadata.sorted_tables:
        statements.append(_tidy(CreateTable(table).compile(dialect=dialect)))
        for index in sorted(table.indexes, key=lambda i: i.name):
            statements.append(_tidy(CreateIndex(index).compile(dialect=dialect)))
    return header + "\n" + ";\n\n".join(statements) + ";\n"


def _tidy(compiled) -> str:
    return "\n".join(line.rstrip() for line in str(compiled).strip().splitlines())


def path_for(sql_dir: Path, dialect_name: str) -> Path:
    return sql_dir / f"schema.{dialect_name}.sql"


if __name__ == "__main__":
    sql_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("sql")
    for name in DIALECTS:
        path_for(sql_dir, name).write_text(render(name))
        print(path_for(sql_dir, name))
