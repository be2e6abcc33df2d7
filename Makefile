# The two commands of the README: `make run` and `make test`.
VENV ?= .venv
PYTHON ?=
export PYTHON
STAMP := $(VENV)/.imgpipe-installed
SHARED_DATA ?= ../shared/datasets

.PHONY: run test test-fast venv lock bench bench-serving cifar10-data clean image
IMAGE ?= imgpipe:0.1.0

run: $(STAMP)
	$(VENV)/bin/imgpipe run

test: $(STAMP)
	VENV=$(VENV) bash scripts/run-tests.sh

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock scripts/bootstrap-venv.sh
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

# Prediction service throughput/latency against the quickstart champion.
bench-serving: run
	$(VENV)/bin/python bench/serving.py

clean:
	rm -rf runs
