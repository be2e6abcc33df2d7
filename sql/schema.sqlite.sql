-- imgpipe model registry, sqlite DDL (schema revision 0006).
-- Generated from imgpipe/registry/models.py by `python -m imgpipe.registry.ddl`;
-- `imgpipe registry migrate` (Alembic) creates the same schema and records
-- its revision, which is what the pipeline checks.

CREATE TABLE feedback (
	id INTEGER NOT NULL,
	prediction_id VARCHAR(36) NOT NULL,
	label VARCHAR(200) NOT NULL,
	class_id INTEGER NOT NULL,
	source VARCHAR(20) NOT NULL,
	created_at DATETIME NOT NULL,
	CONSTRAINT pk_feedback PRIMARY KEY (id),
	CONSTRAINT uq_feedback_prediction_id UNIQUE (prediction_id)
);

CREATE TABLE model_registry (
	id INTEGER NOT NULL,
	model_uid VARCHAR(200) NOT NULL,
	architecture_type VARCHAR(100) NOT NULL,
	val_accuracy FLOAT NOT NULL,
	artifact_path TEXT NOT NULL,
	training_date DATETIME NOT NULL,
	model_name VARCHAR(200) NOT NULL,
	version INTEGER NOT NULL,
	per_class_f1 JSON NOT NULL,
	serving_accuracy FLOAT,
	parity_accuracy_gap FLOAT,
	parity_disagreement FLOAT,
	blessed BOOLEAN NOT NULL,
	data_fingerprint VARCHAR(64) NOT NULL,
	schema_hash VARCHAR(64) NOT NULL,
	training_config JSON NOT NULL,
	augmentation_config JSON NOT NULL,
	pipeline_run_id VARCHAR(200),
	library_versions JSON NOT NULL,
	mlflow_run_id VARCHAR(64),
	mlflow_model_version INTEGER,
	status VARCHAR(20) DEFAULT 'registered' NOT NULL,
	promoted_at DATETIME,
	created_at DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL,
	serving_baseline JSON,
	statistics_path TEXT,
	parameter_count INTEGER,
	backbone VARCHAR(100),
	weights_source TEXT,
	weights_sha256 VARCHAR(64),
	preprocessing_contract JSON,
	fuzz_report JSON,
	CONSTRAINT pk_model_registry PRIMARY KEY (id),
	CONSTRAINT uq_model_registry_model_name_version UNIQUE (model_name, version),
	CONSTRAINT ck_model_registry_status CHECK (status IN ('registered', 'champion', 'archived', 'rolled_back')),
	CONSTRAINT ck_model_registry_version_positive CHECK (version >= 1),
	CONSTRAINT uq_model_registry_model_uid UNIQUE (model_uid)
);

CREATE INDEX ix_model_registry_created_at ON model_registry (created_at);

CREATE INDEX ix_model_registry_model_name_status ON model_registry (model_name, status);

CREATE INDEX ix_model_registry_model_name_val_accuracy ON model_registry (model_name, val_accuracy);

CREATE UNIQUE INDEX uq_model_registry_one_champion ON model_registry (model_name) WHERE status = 'champion';

CREATE TABLE prediction_log (
	id INTEGER NOT NULL,
	created_at DATETIME NOT NULL,
	model_name VARCHAR(200) NOT NULL,
	model_uid VARCHAR(200) NOT NULL,
	model_version INTEGER NOT NULL,
	input_hash VARCHAR(64) NOT NULL,
	predicted_class VARCHAR(200) NOT NULL,
	class_id INTEGER NOT NULL,
	confidence FLOAT NOT NULL,
	latency_ms FLOAT NOT NULL,
	source VARCHAR(20) NOT NULL,
	sample_path TEXT,
	pixel_min FLOAT,
	pixel_max FLOAT,
	pixel_mean FLOAT,
	saturation FLOAT,
	channel_means JSON,
	prediction_id VARCHAR(36),
	variant VARCHAR(20),
	shadow_of VARCHAR(36),
	CONSTRAINT pk_prediction_log PRIMARY KEY (id),
	CONSTRAINT uq_prediction_log_prediction_id UNIQUE (prediction_id)
);

CREATE INDEX ix_prediction_log_model_name_created_at ON prediction_log (model_name, created_at);

CREATE INDEX ix_prediction_log_model_uid ON prediction_log (model_uid);

CREATE INDEX ix_prediction_log_shadow_of ON prediction_log (shadow_of);

CREATE TABLE promotion_decision (
	id INTEGER NOT NULL,
	model_name VARCHAR(200) NOT NULL,
	challenger_uid VARCHAR(200) NOT NULL,
	champion_uid VARCHAR(200),
	decision VARCHAR(20) NOT NULL,
	promoted BOOLEAN NOT NULL,
	evidence JSON NOT NULL,
	decided_at DATETIME NOT NULL,
	CONSTRAINT pk_promotion_decision PRIMARY KEY (id)
);

CREATE INDEX ix_promotion_decision_model_name_decided_at ON promotion_decision (model_name, decided_at);
