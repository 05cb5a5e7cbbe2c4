#!/usr/bin/env bash
# The image's lock file, requirements.lock: every runtime dependency of pyproject.toml and
# theirs, pinned, with the hashes of their files (uv pip compile, one resolution for every
# platform and Python from 3.11 on). The Dockerfile installs from it with --require-hashes.
#
#   bash .ci/lock.sh          write requirements.lock again (after changing a dependency;
#                             pins that still fit are kept: --upgrade to take newer ones)
#   bash .ci/lock.sh --check  CI: fail unless requirements.lock pins what pyproject.toml asks
#
# Needs uv (the "test" extra installs it) and the package registry.
set -euo pipefail
cd "$(dirname "$0")/.."

compile() {
  uv pip compile pyproject.toml --quiet --generate-hashes --universal --python-version 3.11 \
    --custom-compile-command "bash .ci/lock.sh" "$@"
}

if [[ ${1:-} != --check ]]; then
  compile -o requirements.lock "$@"
  exit 0
fi

# Compiled again from a copy (uv keeps the copy's pins wherever they still fit), the lock must
# pin the same versions. Hashes are left out of the comparison: a release may gain a file
# (a wheel for a new Python) without the lock being wrong.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp requirements.lock "$work/requirements.lock"
compile -o "$work/requirements.lock"
pins() { grep -E '^[A-Za-z0-9]' "$1" | sed 's/ *\\$//'; }
if ! diff <(pins requirements.lock) <(pins "$work/requirements.lock"); then
  echo "requirements.lock does not match pyproject.toml: run 'bash .ci/lock.sh' and commit it" >&2
  exit 1
fi
echo "requirements.lock matches pyproject.toml ($(pins requirements.lock | wc -l) pins)"
