#!/usr/bin/env bash
# Build the service image and the Kafka image (make images).
#
#   localhost/pipeline:latest         Dockerfile             every service: `pipeline run SERVICE --app MODULE:ATTR`
#   localhost/pipeline-kafka:4.3.1    deploy/kafka.Dockerfile  Apache Kafka 4.3.1, KRaft, configured by KAFKA_*
#
# Their bases are the official docker.io python and apache/kafka images when a registry answers. When none does
# (air-gapped sites, CI sandboxes) the bases are built from Debian's packages and the Maven Central jars that the
# embedded broker fetches: debootstrap (cached as a tarball under $PIPELINE_HOME/images), imported into the engine,
# then python3 / openjdk-17 installed from Debian's mirror. Every step is skipped when its result is already there,
# so a second run takes seconds.
#
# Environment: ENGINE=podman|docker (default: podman if installed), IMAGES_BASE=auto|official|debian,
# DEBIAN_MIRROR, PIPELINE_HOME, PYTHON (the venv's, for the jar fetch), PIP_CERT (a CA bundle pip needs, e.g. behind a
# TLS-inspecting proxy: handed to the build as a secret, not stored in the image).
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE=${ENGINE:-$(command -v podman >/dev/null 2>&1 && echo podman || echo docker)}
IMAGES_BASE=${IMAGES_BASE:-auto}
PYTHON=${PYTHON:-.venv/bin/python}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${PIPELINE_HOME:-$HOME/.cache/pipeline}/images
SERVICE_IMAGE=${PIPELINE_IMAGE:-localhost/pipeline:latest}
KAFKA_IMAGE=${PIPELINE_KAFKA_IMAGE:-localhost/pipeline-kafka:4.3.1}
OFFICIAL_PYTHON=docker.io/library/python:3.11-slim
OFFICIAL_KAFKA=docker.io/apache/kafka:4.3.1
DEBIAN_IMAGE=localhost/pipeline-debian:bookworm
DEBIAN_PYTHON=localhost/pipeline-python:3.11-bookworm
DEBIAN_KAFKA=localhost/pipeline-kafka-base:4.3.1-bookworm

step() { printf '==> %s\n' "$*" >&2; }
timed() {  # timed LABEL CMD...: run CMD, then print how long it took
  local label=$1 start=$SECONDS; shift
  "$@"
  printf '    %s: %ss\n' "$label" $((SECONDS - start)) >&2
}
have_image() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }
build() {  # build TAG DOCKERFILE CONTEXT [ARGS...]
  local tag=$1 file=$2 context=$3; shift 3
  local secret=() format=()
  [[ $ENGINE == podman ]] && format=(--format docker)  # OCI images drop HEALTHCHECK
  [[ -n "${PIP_CERT:-}" && -s "${PIP_CERT:-}" ]] && secret=(--secret "id=pip_cert,src=$PIP_CERT")
  # --network host: the RUN steps reach the package mirrors through the host's own network set-up
  "$ENGINE" build --network host "${format[@]}" "${secret[@]}" -t "$tag" -f "$file" "$@" "$context"
}

pullable() {  # true if the engine can pull this image within 30 s (or already has it)
  have_image "$1" || timeout 30 "$ENGINE" pull -q "$1" >/dev/null 2>&1
}

debian_rootfs() {  # the debootstrap minbase, cached as a tarball, imported as $DEBIAN_IMAGE
  have_image "$DEBIAN_IMAGE" && return
  local tarball=$CACHE/debian-bookworm-minbase.tar
  if [[ ! -s $tarball ]]; then
    # exit 3: this host cannot build the Debian bases (tests/containers skip, saying why)
    command -v debootstrap >/dev/null || { echo "no registry answers and debootstrap is missing" >&2; exit 3; }
    [[ $(id -u) == 0 ]] || { echo "no registry answers and debootstrap needs root" >&2; exit 3; }
    mkdir -p "$CACHE"
    local root; root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    step "debootstrap --variant=minbase bookworm ($DEBIAN_MIRROR)"
    timed debootstrap debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >/dev/null
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$tarball.partial" . && mv "$tarball.partial" "$tarball"
    rm -rf "$root"; trap - EXIT
  fi
  step "import $tarball as $DEBIAN_IMAGE"
  timed import "$ENGINE" import "$tarball" "$DEBIAN_IMAGE" >/dev/null
}

debian_bases() {  # sets PY_BASE and KAFKA_BASE to images built from Debian packages + Maven jars
  debian_rootfs
  step "$DEBIAN_PYTHON (python3 from Debian)"
  timed python-base build "$DEBIAN_PYTHON" deploy/debian/python.Dockerfile deploy/debian --build-arg "DEBIAN=$DEBIAN_IMAGE"
  step "Kafka jars (Maven Central, cached with the embedded broker's)"
  local libs ctx
  libs=$("$PYTHON" -c "from pipeline.broker._fetch import ensure_kafka; print(ensure_kafka(progress=print, tools=True))" | tail -1)
  ctx=$(mktemp -d)
  cp -r deploy/debian/kafka "$ctx/kafka" && cp -rl "$libs" "$ctx/libs" 2>/dev/null || cp -r "$libs" "$ctx/libs"
  step "$DEBIAN_KAFKA (openjdk-17 from Debian, the Maven jars)"
  timed kafka-base build "$DEBIAN_KAFKA" deploy/debian/kafka.Dockerfile "$ctx" --build-arg "DEBIAN=$DEBIAN_IMAGE"
  rm -rf "$ctx"
  PY_BASE=$DEBIAN_PYTHON KAFKA_BASE=$DEBIAN_KAFKA
}

case $IMAGES_BASE in
  official) PY_BASE=$OFFICIAL_PYTHON KAFKA_BASE=$OFFICIAL_KAFKA ;;
  debian) debian_bases ;;
  auto)
    if pullable "$OFFICIAL_PYTHON" && pullable "$OFFICIAL_KAFKA"; then
      PY_BASE=$OFFICIAL_PYTHON KAFKA_BASE=$OFFICIAL_KAFKA
    else
      step "no registry answers: bases from Debian packages"
      debian_bases
    fi ;;
  *) echo "IMAGES_BASE must be auto, official or debian, not $IMAGES_BASE" >&2; exit 2 ;;
esac

step "$SERVICE_IMAGE (base $PY_BASE)"
timed service build "$SERVICE_IMAGE" Dockerfile . --build-arg "BASE=$PY_BASE"
step "$KAFKA_IMAGE (base $KAFKA_BASE)"
timed kafka build "$KAFKA_IMAGE" deploy/kafka.Dockerfile deploy --build-arg "BASE=$KAFKA_BASE"
for image in "$SERVICE_IMAGE" "$KAFKA_IMAGE"; do
  printf '    %s: %s MB\n' "$image" $(( $("$ENGINE" image inspect -f '{{.Size}}' "$image") / 1000000 )) >&2
done
