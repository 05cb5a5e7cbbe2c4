#!/bin/sh
# Runs inside the image (.ci/container.sh): starts the sandbox portal on the container's
# loopback with the sample portal state, then `run-job` on /ci/container-job.toml against
# it, with any arguments given here added. Exits with run-job's exit code.
set -eu
reaction-cleanup sandbox --state /sample/portal_state.json --port 8024 >/data/sandbox.out 2>&1 &
sandbox=$!
# The sandbox prints its base URL, then the webhook URL, once it listens.
tries=0
until [ "$(wc -l </data/sandbox.out)" -ge 2 ]; do
  tries=$((tries + 1))
  if [ "$tries" -gt 100 ] || ! kill -0 "$sandbox" 2>/dev/null; then
    echo "the sandbox did not start:" >&2
    cat /data/sandbox.out >&2
    exit 70
  fi
  sleep 0.1
done
B24_WEBHOOK_URL=$(sed -n 2p /data/sandbox.out)
export B24_WEBHOOK_URL
rc=0
reaction-cleanup run-job /ci/container-job.toml "$@" || rc=$?
kill -TERM "$sandbox"
wait "$sandbox" || true
exit "$rc"
