# The prediction service: `imgpipe serve` on a slim CPU image (no TFX, Beam,
# MLflow or CUDA). Build from the repository root:
#   docker build -f docker/serving.Dockerfile -t <registry>/imgpipe-serving:<tag> .
# Run it against the team's registry (the champion's SavedModel must be
# readable at its artifact_path, e.g. gs:// or a mounted volume):
#   docker run -p 8080:8080 -e IMGPIPE_REGISTRY_URL=postgresql+psycopg2://... \
#     -e IMGPIPE_PREDICTION_LOG_URL=postgresql+psycopg2://... <image> --model cifar10-cnn
# The entrypoint listens on 0.0.0.0: without a token anyone who reaches the
# port can use the model (imgpipe serve warns). Require a bearer token from an
# environment variable or a mounted secret file (never baked into the image):
#   -e IMGPIPE_SERVE_TOKEN=... <image> --set serving.auth_token_env=IMGPIPE_SERVE_TOKEN
#   -v /run/secrets/token:/run/secrets/token:ro <image> \
#     --set serving.auth_token_file=/run/secrets/token
# /healthz and /metrics stay open for probes and scrapers (serving.auth_open_paths).

FROM python:3.10-slim AS wheel
WORKDIR /src
COPY . .
RUN pip wheel --no-deps --no-cache-dir -w /wheels .

FROM python:3.10-slim
ENV TF_USE_LEGACY_KERAS=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY requirements.lock docker/serving-requirements.txt /tmp/
COPY --from=wheel /wheels /tmp/wheels
# tensorflow-cpu is the same release as the lock's tensorflow, without CUDA.
RUN grep -v '^tensorflow==' /tmp/requirements.lock > /tmp/constraints.txt \
 && pip install --no-cache-dir -c /tmp/constraints.txt -r /tmp/serving-requirements.txt \
 && pip install --no-cache-dir --no-deps /tmp/wheels/imgpipe-*.whl \
 && rm -rf /tmp/wheels /tmp/*.txt /tmp/requirements.lock
RUN useradd --system --create-home --uid 10001 imgpipe
USER imgpipe
WORKDIR /home/imgpipe
EXPOSE 8080
ENTRYPOINT ["imgpipe", "serve", "--host", "0.0.0.0", "--port", "8080"]
