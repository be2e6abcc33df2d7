# The two commands of the README: `make run` and `make test`.
VENV ?= .venv
PYTHON ?=
export PYTHON
STAMP := $(VENV)/.imgpipe-installed
PYTEST_ARGS ?=
SHARED_DATA ?= ../shared/datasets

.PHONY: run test test-fast lint venv lock bench bench-package bench-serving bench-photos bench-transfer cifar10-data clean image
IMAGE ?= imgpipe:$(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' imgpipe/__init__.py)

run: $(STAMP)
	$(VENV)/bin/imgpipe run

# Everything, as CI runs it; installs the PostgreSQL server when it is missing.
# Extra pytest arguments: make test PYTEST_ARGS='-k registry'
test: $(STAMP)
	VENV=$(VENV) bash scripts/run-tests.sh $(PYTEST_ARGS)

# No Beam pipeline, no PostgreSQL, no fault injection (pytest -m "not e2e and not postgres and
# not faults"): a few minutes.
test-fast: $(STAMP)
	VENV=$(VENV) bash scripts/run-tests.sh --fast $(PYTEST_ARGS)

# ruff, configured in pyproject.toml ([tool.ruff]); CI runs it before the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff check .

venv: $(STAMP)

$(STAMP): setup.py pyproject.toml requirements.lock scripts/bootstrap-venv.sh
	bash scripts/bootstrap-venv.sh $(VENV)

# Re-pin after changing dependencies in pyproject.toml.
lock: $(STAMP)
	{ sed -n '1,3p' requirements.lock; $(VENV)/bin/pip freeze --exclude-editable | grep -v '^imgpipe'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

# CIFAR-10 training set from ../shared/datasets, for configs/cifar10.toml and bench/.
cifar10-data:
	mkdir -p runs/datasets/cifar10
	test -d runs/datasets/cifar10/train || tar -xzf $(SHARED_DATA)/cifar10-train.tar.gz -C runs/datasets/cifar10

bench: $(STAMP) cifar10-data
	$(VENV)/bin/python bench/ingestion.py --data runs/datasets/cifar10/train
	$(VENV)/bin/python bench/validation.py --data runs/datasets/cifar10/train
	$(VENV)/bin/python bench/training.py --data runs/datasets/cifar10/train

# The component image for Kubeflow (needs a Docker engine); push it where the
# cluster can pull it and compile with --image $(IMAGE).
image:
	docker build -f docker/Dockerfile -t $(IMAGE) .

# The installed package from an empty folder (wheel, install, start-up, init + run at two
# sizes) and validate --baseline with a data vs a statistics baseline at two sizes.
bench-package: $(STAMP)
	$(VENV)/bin/python bench/package.py
	$(VENV)/bin/python bench/baseline.py

# Photos at 224x224 (the shared hymenoptera set, and copies of it): ingest, schema infer,
# validate at three sizes against Pillow's decode + resize.
bench-photos: $(STAMP)
	$(VENV)/bin/python bench/photos.py

# MobileNetV2 on the hymenoptera photos: untrained vs started from a weights file.
bench-transfer: $(STAMP)
	$(VENV)/bin/python bench/transfer.py

# Prediction service throughput/latency against the quickstart champion.
bench-serving: run
	$(VENV)/bin/python bench/serving.py

clean:
	rm -rf runs
