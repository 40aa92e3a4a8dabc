# The AWS Lambda image of d2serve (x86_64): `serve` and `batch` on
# provided.al2023 with the ONNX Runtime library beside them and OpenVINO's in
# openvino/ beside them (for D2_RUNTIME=auto|openvino; the engine looks for both
# beside its binary; functions/batch/tests/images.rs checks this file).
# One image, two functions: the function's ImageConfig.Command (`serve` or
# `batch`) picks the binary (infra/lambda-bootstrap.sh).
#
#   docker build -f infra/lambda.Dockerfile -t d2serve-lambda .      # from the repository root
#   sam build -t infra/template.yaml                                  # what infra/README.md does

# ONNX Runtime from the PyPI wheel, by the same script the tests use.
FROM public.ecr.aws/docker/library/python:3.12-slim AS ort
WORKDIR /src
COPY scripts/install-ort.sh scripts/
RUN scripts/install-ort.sh
COPY scripts/install-openvino.sh scripts/
RUN scripts/install-openvino.sh

# Built on Amazon Linux 2023 itself, so the binaries need no newer glibc than Lambda has.
FROM public.ecr.aws/amazonlinux/amazonlinux:2023 AS build
# Versions come with the AL2023 release the tag pins; dnf has no per-package pinning worth keeping in sync.
# hadolint ignore=DL3041
RUN dnf install -y gcc gzip tar && dnf clean all
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG RUST_VERSION=1.95.0
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
      | sh -s -- -y --profile minimal --default-toolchain "${RUST_VERSION}"
ENV PATH=/root/.cargo/bin:${PATH}
WORKDIR /src
# Every workspace member must be present for cargo to load the workspace.
COPY Cargo.toml Cargo.lock models.toml ./
COPY crates crates
COPY functions functions
COPY registry-cli registry-cli
COPY tests tests
RUN cargo build --release --locked -p d2serve-serve -p d2serve-batch

FROM public.ecr.aws/lambda/provided:al2023
COPY --from=ort /src/third_party/ort/ /var/task/
COPY --from=ort /src/third_party/openvino/ /var/task/openvino/
COPY --from=build /src/target/release/serve /src/target/release/batch /var/task/
COPY infra/lambda-bootstrap.sh /var/runtime/bootstrap
ENV D2_CACHE_DIR=/tmp/d2serve-models
CMD ["serve"]
