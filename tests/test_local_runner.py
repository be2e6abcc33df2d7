"""Runner helpers that need no pipeline run."""
from imgpipe.pipeline.local_runner import LOCAL_SDK_IMAGE, local_beam_args


def test_local_runs_skip_tfx_dependency_packaging():
    args = ["--direct_running_mode=in_memory"]
    assert local_beam_args(args) == [*args, f"--sdk_container_image={LOCAL_SDK_IMAGE}"]


def test_explicit_dependencies_and_distributed_runners_are_left_alone():
    with_setup = ["--setup_file=./setup.py"]
    assert local_beam_args(with_setup) == with_setup
    flink = ["--runner=FlinkRunner", "--flink_master=localhost:8081"]
    assert local_beam_args(flink) == flink
