# A Python 3.11 base from Debian's packages, for hosts where the official python image cannot be pulled.
# FROM is the Debian bookworm minbase that deploy/images.sh imports from debootstrap.
ARG DEBIAN=localhost/pipeline-debian:bookworm
FROM ${DEBIAN}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
