-- imgpipe model registry: queries people will want, for PostgreSQL and SQLite.
-- Parameters are named (:model_name); bind them, never paste values in.
-- A query with a "[postgresql]" or "[sqlite]" suffix exists once per
-- dialect (JSON access differs); the others run on both.
-- tests/test_sql_queries.py runs every query here against both databases.

-- name: register_model_version
-- The source article's INSERT (model_uid, architecture_type, val_accuracy,
-- artifact_path, training_date) adapted to this table. The version is the
-- next one for the model name; imgpipe itself does this under a per-model
-- lock (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL), which a
-- hand-run INSERT does not take.
INSERT INTO model_registry (
    model_uid, architecture_type, val_accuracy, artifact_path, training_date,
    model_name, version, per_class_f1, blessed, data_fingerprint, schema_hash,
    training_config, augmentation_config, library_versions, status)
VALUES (
    :model_uid, :architecture_type, :val_accuracy, :artifact_path, :training_date,
    :model_name,
    (SELECT COALESCE(MAX(version), 0) + 1 FROM model_registry WHERE model_name = :model_name),
    :per_class_f1, :blessed, :data_fingerprint, :schema_hash,
    :training_config, :augmentation_config, :library_versions, 'registered');

-- name: current_champions
-- The champion of every model name: what serving loads.
SELECT model_name, version, model_uid, val_accuracy, artifact_path, promoted_at
FROM model_registry
WHERE status = 'champion'
ORDER BY model_name;

-- name: model_history
-- Every version of one model, newest first, with its lifecycle.
SELECT version, model_uid, status, val_accuracy, serving_accuracy, blessed,
       training_date, promoted_at, created_at, mlflow_model_version
FROM model_registry
WHERE model_name = :model_name
ORDER BY version DESC;

-- name: best_by_class_f1 [postgresql]
-- The versions best at one class (e.g. the weakest class of the champion).
SELECT version, model_uid, status, (per_class_f1 ->> :class_name)::float AS class_f1, val_accuracy
FROM model_registry
WHERE model_name = :model_name AND per_class_f1 ? :class_name
ORDER BY class_f1 DESC, version DESC
LIMIT 5;

-- name: best_by_class_f1 [sqlite]
-- The key is quoted in the JSON path so class names with dots (t.shirt) are
-- one key, not a nested path.
SELECT version, model_uid, status,
       CAST(json_extract(per_class_f1, '$."' || :class_name || '"') AS REAL) AS class_f1,
       val_accuracy
FROM model_registry
WHERE model_name = :model_name
  AND json_extract(per_class_f1, '$."' || :class_name || '"') IS NOT NULL
ORDER BY class_f1 DESC, version DESC
LIMIT 5;

-- name: unfinished_pushes
-- Rows whose push stopped before MLflow was recorded: re-run that push
-- (it completes idempotently) before promoting them.
SELECT model_name, version, model_uid, created_at
FROM model_registry
WHERE mlflow_model_version IS NULL
ORDER BY created_at;

-- name: same_data_and_schema
-- Versions trained on the same data and schema as a given one.
SELECT other.model_name, other.version, other.model_uid, other.val_accuracy
FROM model_registry AS this
JOIN model_registry AS other
  ON other.data_fingerprint = this.data_fingerprint
 AND other.schema_hash = this.schema_hash
 AND other.model_uid <> this.model_uid
WHERE this.model_uid = :model_uid
ORDER BY other.created_at DESC;
