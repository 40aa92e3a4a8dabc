# The GPU image of d2serve: `serve --listen` as a long-running HTTP server on
# CUDA 13 + cuDNN 9 (what onnxruntime-gpu 1.31.1 is built for), with the
# onnxruntime-gpu library and its CUDA provider beside the binary (the engine
# looks beside its binary; functions/batch/tests/images.rs checks this file).
# Run it on an EC2 GPU instance, e.g. with infra/gpu-ecs.yaml.
#
#   docker build -f infra/gpu.Dockerfile -t d2serve-gpu .      # from the repository root
#   docker run --gpus all -p 8000:8000 -e D2_REGISTRY=s3://BUCKET/registry d2serve-gpu

FROM public.ecr.aws/docker/library/python:3.12-slim AS ort
WORKDIR /src
COPY scripts/install-ort.sh scripts/
RUN scripts/install-ort.sh --gpu

# Debian 12's glibc (2.36) is older than the runtime image's (Ubuntu 24.04, 2.39).
FROM public.ecr.aws/docker/library/rust:1.95-bookworm AS build
WORKDIR /src
# Every workspace member must be present for cargo to load the workspace.
COPY Cargo.toml Cargo.lock models.toml ./
COPY crates crates
COPY functions functions
COPY registry-cli registry-cli
COPY tests tests
RUN cargo build --release --locked -p d2serve-serve -p d2serve-batch

FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
COPY --from=ort /src/third_party/ort-gpu/ /opt/d2serve/
COPY --from=build /src/target/release/serve /src/target/release/batch /opt/d2serve/
RUN useradd --system --uid 10001 --home-dir /var/cache/d2serve --create-home d2serve
USER 10001
ENV D2_LISTEN=0.0.0.0:8000 \
    D2_DEVICE=cuda \
    D2_CACHE_DIR=/var/cache/d2serve/models \
    D2_PRELOAD=true
EXPOSE 8000
ENTRYPOINT ["/opt/d2serve/serve"]
