"""The model registry: one home for its tables, migrations and store functions.

Used by the Pusher, the champion resolver, the `imgpipe registry` CLI and
serving. The database is the source of truth for "which model": versions and
the champion come from here, never from "the latest directory".
"""
