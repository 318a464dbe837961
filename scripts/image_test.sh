#!/usr/bin/env bash
# Build the Action's image and run it as GitHub runs a Docker action (scripts/image_test.py says how),
# with Debian's buildah and podman (no Docker daemon needed: vfs storage, chroot isolation, runc).
#
#   scripts/image_test.sh                 # on a stand-in base when the pinned one cannot be pulled
#   BASE=python:3.11.7-slim-bookworm@sha256:... scripts/image_test.sh   # on the real base
#
# The stand-in: a Debian bookworm root filesystem from debootstrap (with python3 and venv), imported as
# docker.io/library/python:3.11.7-slim-bookworm. Built once into $WORK (default /var/tmp/gate-image).
# FIND_LINKS=DIR mounts a folder with the torch CPU wheel into the build; PIP_CERT=FILE hands pip a CA
# bundle as a build secret (never a layer). Needs root (the runs chown like a runner) and: buildah podman
# debootstrap runc (apt-get install buildah podman debootstrap runc).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/var/tmp/gate-image}
STANDIN=docker.io/library/python:3.11.7-slim-bookworm
PODMAN=(podman --storage-driver vfs)
if [ -z "${BASE:-}" ]; then
    BASE=$STANDIN
    if ! "${PODMAN[@]}" image exists "$STANDIN"; then
        mkdir -p "$WORK"
        if [ ! -x "$WORK/rootfs/usr/bin/python3" ]; then
            rm -rf "$WORK/rootfs"
            debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
                bookworm "$WORK/rootfs" http://deb.debian.org/debian
        fi
        tar -C "$WORK/rootfs" -c . | "${PODMAN[@]}" import \
            --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["python3"]' - "$STANDIN"
    fi
fi
args=(--base "$BASE")
[ -n "${FIND_LINKS:-}" ] && args+=(--find-links "$FIND_LINKS")
[ -n "${PIP_CERT:-}" ] && args+=(--pip-cert "$PIP_CERT")
[ -n "${TORCH_INDEX+x}" ] && args+=(--torch-index "$TORCH_INDEX")
exec .venv/bin/python scripts/image_test.py "${args[@]}" "$@"
