"""Small real SavedModels and registry rows for registry/Pusher tests.

The model has the exported signatures' names and outputs (serving_bytes,
serving_default) but a trivial body — the registry does not care what it
computes, only that it is a SavedModel a server can load.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from imgpipe.registry import mlflow_sync, store

CLASSES = ["dark", "bright"]


def write_tiny_saved_model(directory: Path, bias: float = 0.0) -> Path:
    """Class `bright` when the mean pixel exceeds 127 (+bias); uint8 input only."""
    import tensorflow as tf

    names = tf.constant(CLASSES)

    class Tiny(tf.Module):
        def _predict(self, images):
            mean = tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2, 3]) / 255.0
            bright = tf.clip_by_value(mean + bias, 0.0, 1.0)
            probabilities = tf.stack([1.0 - bright, bright], axis=-1)
            class_id = tf.argmax(probabilities, axis=-1)
            return {"probabilities": probabilities, "class_id": class_id,
                    "class_name": tf.gather(names, class_id)}

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.uint8, name="images")])
        def serve_pixels(self, images):
            return self._predict(images)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve_bytes(self, image_bytes):
            images = tf.map_fn(lambda data: tf.image.resize(
                tf.io.decode_image(data, channels=3, expand_animations=False), [8, 8]),
                image_bytes, fn_output_signature=tf.float32)
            return self._predict(tf.cast(images, tf.uint8))

    module = Tiny()
    tf.saved_model.save(module, str(directory), signatures={
        "serving_default": module.serve_pixels, "serving_bytes": module.serve_bytes})
    return directory


def new_version(uid: str, model_name: str = "tiny", accuracy: float = 0.9) -> store.NewVersion:
    return store.NewVersion(
        model_uid=uid, model_name=model_name, architecture_type="Sequential-CNN",
        val_accuracy=accuracy, training_date=dt.datetime.now(dt.timezone.utc),
        per_class_f1={"dark": accuracy, "bright": accuracy}, blessed=True,
        data_fingerprint="d" * 64, schema_hash="s" * 64,
        training_config={"epochs": 1, "class_names": CLASSES, "image_shape": [8, 8, 3]},
        augmentation_config={"horizontal_flip": True},
        library_versions={"tensorflow": "2.16.2"}, pipeline_run_id="run-1",
        serving_accuracy=accuracy, parity_accuracy_gap=0.0, parity_disagreement=0.0)


def run_record(uid: str, artifact_root: str) -> mlflow_sync.RunRecord:
    return mlflow_sync.RunRecord(
        experiment_name="tiny-pipeline", run_name=f"push-{uid}",
        params={"epochs": "1"}, metrics={"accuracy": 0.9}, artifacts={}, tags={},
        artifact_root=artifact_root)


def push_many(args) -> list:
    """One concurrent pusher (a separate process): `count` blessed models, each
    compared against the champion it read just before, as a pipeline would."""
    from imgpipe.registry import publish
    worker, count, registry_url, tracking_uri, root, model_dir = args
    engine = store.engine_for(registry_url)
    results = []
    for index in range(count):
        uid = f"tiny-w{worker}-{index}"
        current = store.champion(engine, "tiny")
        result = publish.publish(
            registry_url, tracking_uri, f"{root}/serving", model_dir, new_version(uid),
            run_record(uid, f"{root}/mlartifacts"), promote=True,
            expected_champion=current.model_uid if current else None)
        results.append((result.model_uid, result.version))
    return results


def migrate_at_once(barrier, registry_url: str) -> None:
    """One of several processes migrating the same database at the same moment."""
    import alembic.command  # noqa: F401  (imported and connected before the barrier,
    store.engine_for(registry_url).connect().close()  # so the processes overlap)
    barrier.wait()
    store.migrate(registry_url)
