# reaction-cleanup as a container image: a small image that runs as a non-root user with a
# read-only root filesystem; everything it writes goes to /data.
#
#   podman build -t localhost/reaction-cleanup:0.1.0 .        (or: docker build ...)
#   podman run --rm --read-only localhost/reaction-cleanup:0.1.0 demo
#
# BASE: any Debian-based image with Python >= 3.11 and its venv module. CI builds offline
# on a Debian root filesystem it makes itself (.ci/container.sh) and passes
# PIP_INSTALL_OPTS="--no-index --find-links /src/.ci/wheels" with wheels downloaded beforehand.
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
ARG PIP_INSTALL_OPTS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
COPY . /src
# The project and its runtime dependencies only (no extras), in a virtual environment that
# the final stage copies whole. The dependencies are the exact files requirements.lock names
# (versions and hashes: the same image from the same commit; `bash .ci/lock.sh` writes it),
# then the project itself without dependencies, and `pip check` proves nothing is missing.
# pip and setuptools are build tools, and the libraries' own test suites and C headers are
# never used at run time (70 MB): removed afterwards.
# Bytecode is compiled here, checked against nothing at run time (unchecked-hash), so a
# read-only root never makes Python recompile or try to write.
RUN python3 -m venv /opt/reaction-cleanup \
 && /opt/reaction-cleanup/bin/pip install ${PIP_INSTALL_OPTS} --require-hashes \
      -r /src/requirements.lock \
 && /opt/reaction-cleanup/bin/pip install ${PIP_INSTALL_OPTS} --no-deps /src \
 && /opt/reaction-cleanup/bin/pip check \
 && /opt/reaction-cleanup/bin/pip uninstall -q -y pip setuptools \
 && find /opt/reaction-cleanup/lib -depth -type d -name tests -path '*/site-packages/*' \
      -exec rm -rf {} + \
 && rm -rf /opt/reaction-cleanup/lib/python3*/site-packages/pyarrow/include \
      /opt/reaction-cleanup/lib/python3*/site-packages/pyarrow/src \
 && /opt/reaction-cleanup/bin/python -m compileall -q -j 0 \
      --invalidation-mode unchecked-hash /opt/reaction-cleanup/lib

FROM ${BASE}
LABEL org.opencontainers.image.title="reaction-cleanup" \
      org.opencontainers.image.description="Remove chat-bot reactions listed in spreadsheets from Bitrix24 portals" \
      org.opencontainers.image.licenses="MIT"
ENV PATH=/opt/reaction-cleanup/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/data
COPY --from=build /opt/reaction-cleanup /opt/reaction-cleanup
# A numeric user (Kubernetes' runAsNonRoot can only verify a number) and the one writable
# folder. The passwd line is written directly: the base need not have useradd.
RUN echo "reaction-cleanup:x:10001:10001:reaction-cleanup:/data:/usr/sbin/nologin" >> /etc/passwd \
 && echo "reaction-cleanup:x:10001:" >> /etc/group \
 && mkdir -p /data/inbox /data/reports /data/archive /data/state \
 && chown -R 10001:10001 /data
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
ENTRYPOINT ["reaction-cleanup"]
CMD ["--help"]
