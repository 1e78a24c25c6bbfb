# findlora inference service (default target) and registration worker (target `worker`), GPU in
# production, CPU works too. Build from the repository root:
#   docker build -f docker/inference.Dockerfile -t findlora-inference .
#   docker build -f docker/inference.Dockerfile --target worker -t findlora-worker .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (cached layer), then the project itself.
COPY pyproject.toml README.md ./
RUN pip install torch==2.14.1 torchvision==0.29.1
COPY protos ./protos
COPY db ./db
COPY bot ./bot
COPY findlora ./findlora
COPY findlora_client ./findlora_client
COPY inference_service ./inference_service
# Installs this project itself; its dependencies are pinned in pyproject.toml. No lab/: the
# service and the worker never import the offline code.
# hadolint ignore=DL3013
RUN pip install '.[service,otel]'

# The worker adds image generation (diffusers, ControlNet) on top of the service's dependencies.
FROM build AS build-worker
# hadolint ignore=DL3013
RUN pip install '.[worker]'

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS runtime
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home --shell /usr/sbin/nologin findlora \
 && mkdir -p /data /models \
 && chown findlora:findlora /data /models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FINDLORA_DATA_DIR=/data \
    FINDLORA_LISTEN=0.0.0.0:50051 \
    FINDLORA_METRICS_LISTEN=0.0.0.0:9464 \
    HF_HOME=/models/huggingface \
    HF_HUB_OFFLINE=1
WORKDIR /home/findlora
# Blob store (reference images) and model cache persist in volumes.
VOLUME ["/data", "/models"]
ENTRYPOINT ["findlora"]

FROM runtime AS worker
COPY --from=build-worker /opt/venv /opt/venv
USER 10001
CMD ["serve", "worker"]

# Last, so a plain build gives the service.
FROM runtime AS inference
COPY --from=build /opt/venv /opt/venv
USER 10001
EXPOSE 50051 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["findlora", "health", "--service", "127.0.0.1:50051"]
CMD ["serve", "inference"]
