# findlora Discord and Slack bots: slim, no torch, no database driver; they only speak gRPC.
# Build from the repository root: docker build -f docker/bot.Dockerfile -t findlora-bot .
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY bot ./bot
COPY findlora ./findlora
COPY findlora_client ./findlora_client
# The wheel carries every package; only the bot extra's dependencies are installed.
COPY db ./db
COPY inference_service ./inference_service
# Installs this project itself; its dependencies are pinned in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install '.[bot]'

FROM python:3.11-slim
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin findlora
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 FINDLORA_SERVICE=inference:50051
USER 10001
WORKDIR /home/findlora
EXPOSE 9465
ENTRYPOINT ["findlora"]
CMD ["serve", "discord"]
