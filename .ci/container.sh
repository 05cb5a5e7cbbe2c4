#!/usr/bin/env bash
# CI: build the image from this checkout with the top-level Dockerfile, offline, and run it
# the way ops would: `demo`, then `run-job` against a sandbox portal in the same container,
# each with a read-only root filesystem, as the image's non-root user, with no capabilities
# and no network but the container's loopback.
#
# No container registry is reachable here, so the base image is made from Debian's archive
# (mmdebstrap, the host's apt sources) and the project's wheels are downloaded on the host
# with pip and installed in the build with --no-index under --network none. Users build the
# same Dockerfile on a slim Python image instead (docs/how-to/container.md).
#
# Needs root, podman, runc and mmdebstrap (installed here when missing), and pip (the
# calling virtual environment's, whose Python must match the base's: both Debian's python3).
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(python -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
image="localhost/reaction-cleanup:$version"
base="localhost/reaction-cleanup-ci-base:bookworm"
export CONTAINERS_CONF="$PWD/.ci/containers.conf"
work=$(mktemp -d /tmp/reaction-cleanup-ci.XXXXXX)
trap 'rm -rf "$work"' EXIT
step() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }

step "tools"
missing=()
for tool in podman runc mmdebstrap; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "base root filesystem (mmdebstrap: Debian bookworm with python3)"
# The host's Debian sources, so the archive is reached the way apt reaches it here.
sources=/etc/apt/sources.list.d/debian.sources
[[ -s $sources ]] || sources=/etc/apt/sources.list
# libstdc++6: numpy's and pyarrow's wheels link to it (slim Python images have it too).
mmdebstrap --quiet --variant=essential \
  --include=python3,python3-venv,libstdc++6 \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  bookworm "$work/base.tar" "$sources"
podman import --quiet "$work/base.tar" "$base" >/dev/null
rm -f "$work/base.tar"
base_python=$(podman run --rm --pull=never --network none "$base" \
  python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
host_python=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [[ $base_python != "$host_python" ]]; then
  echo "the base has Python $base_python, pip here runs $host_python: wheels would not match" >&2
  exit 1
fi

step "wheels (pip download on the host)"
rm -rf .ci/wheels
# The project's runtime dependencies as requirements.lock pins them (hashes checked), and
# setuptools to build the project itself.
python -m pip download -qq --disable-pip-version-check -d .ci/wheels -r requirements.lock
python -m pip download -qq --disable-pip-version-check -d .ci/wheels "setuptools>=77"

step "image $image (podman build, no network)"
podman build --quiet --pull=never --network none \
  --build-arg BASE="$base" \
  --build-arg PIP_INSTALL_OPTS="--no-index --find-links /src/.ci/wheels" \
  -t "$image" . >/dev/null
podman image prune --force >/dev/null # the build stage
user=$(podman image inspect --format '{{.Config.User}}' "$image")
[[ $user == 10001:10001 ]] || { echo "the image runs as '$user', not 10001:10001" >&2; exit 1; }
podman image list "$image"

# Locked down as in jobs/kubernetes-*.yaml: read-only root and no tmpfs either (nothing is
# written outside /data), no capabilities, no privilege escalation, loopback only.
run() {
  podman run --rm --pull=never --runtime runc --read-only --read-only-tmpfs=false \
    --cap-drop ALL --security-opt no-new-privileges --network none \
    -v "$work/data:/data" "$@"
}
fresh_data() {
  rm -rf "$work/data"
  mkdir -p "$work/data"/{inbox,reports,archive,state}
  chown -R 10001:10001 "$work/data"
}

step "reaction-cleanup --version"
fresh_data
run "$image" --version

# Each sample format: the CSV reader, openpyxl/calamine and pyarrow work in the image.
for format in csv xlsx parquet; do
  step "reaction-cleanup demo --input $format"
  run "$image" demo --input "$format" --out "demo-$format"
  test -s "$work/data/demo-$format/reactions-$format.report.csv.summary.json"
done

step "reaction-cleanup run-job against a sandbox portal in the container"
fresh_data
cp sample_data/reactions.csv "$work/data/inbox/"
chown 10001:10001 "$work/data/inbox/reactions.csv"
rc=0
run -v "$PWD/sample_data:/sample:ro" -v "$PWD/.ci:/ci:ro" \
  --entrypoint /bin/sh "$image" /ci/in-container.sh || rc=$?
# The sample data has rows the portal refuses (wrong token, reaction not found): the run
# finishes with exit 1, "some rows failed", its report complete and the input archived.
if [[ $rc != 1 ]]; then
  echo "run-job in the container exited $rc, expected 1 (some rows failed)" >&2
  exit 1
fi
test -s "$work/data/archive/reactions.csv"
# The HTML page: its template is package data, so this shows the image ships it.
ls "$work/data/reports/"*.report.html >/dev/null
summary=$(find "$work/data/reports" -name '*.summary.json' | head -n 1)
python - "$summary" <<'PY'
import json, sys

counts = json.load(open(sys.argv[1]))["by_status"]
print("run-job in the container:", counts)
assert counts["removed"] > 0 and counts["failed"] > 0, counts
PY

step "run-job with failed_rows_exit_code 0 and a metrics file (Kubernetes' policy)"
fresh_data
cp sample_data/reactions.csv "$work/data/inbox/"
chown 10001:10001 "$work/data/inbox/reactions.csv"
rc=0
run -v "$PWD/sample_data:/sample:ro" -v "$PWD/.ci:/ci:ro" \
  --entrypoint /bin/sh "$image" /ci/in-container.sh \
  --failed-rows-exit-code 0 --metrics-file /data/metrics/ci.prom || rc=$?
# The same failed rows; the job file's policy for a Kubernetes Job makes them exit 0.
if [[ $rc != 0 ]]; then
  echo "run-job --failed-rows-exit-code 0 in the container exited $rc, expected 0" >&2
  exit 1
fi
python - "$work/data/metrics/ci.prom" <<'PY'
import sys

from prometheus_client.parser import text_string_to_metric_families

values = {
    (s.name, s.labels.get("status")): s.value
    for family in text_string_to_metric_families(open(sys.argv[1]).read())
    for s in family.samples
}
print("metrics written in the container:", sorted(values.items())[:3], "...")
assert values[("reaction_cleanup_exit_code", None)] == 0, values
assert values[("reaction_cleanup_rows", "failed")] > 0, values
PY

step "image built and run in ${SECONDS}s"
