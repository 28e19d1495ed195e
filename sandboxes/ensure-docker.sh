#!/usr/bin/env bash
# Make sure a Docker engine answers and debootstrap is installed, so that `osca sandbox build` and the
# sandbox tests can run. For CI and fresh Debian/Ubuntu machines; run as root. Idempotent: when Docker
# already answers and debootstrap is there, it changes nothing.
#
#   bash sandboxes/ensure-docker.sh
#
# Installs (apt): docker.io when dockerd is missing, debootstrap (+ Debian keyring) when missing. Starts dockerd in the
# background (log: /tmp/osca-dockerd.log) when nothing answers, and waits up to 60 s for it.
set -euo pipefail

LOG=${OSCA_DOCKERD_LOG:-/tmp/osca-dockerd.log}
WAIT_S=${OSCA_DOCKERD_WAIT:-60}
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive

say() { echo "ensure-docker: $*"; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        say "$1 needs root; run: sudo bash $0" >&2
        exit 1
    fi
}

apt_updated=0
apt_install() {
    need_root "installing $*"
    if [ "$apt_updated" -eq 0 ]; then
        apt-get update -q
        apt_updated=1
    fi
    apt-get install -y -q --no-install-recommends "$@"
}

docker_answers() { docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && docker_answers; then
    say "Docker already answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
else
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        say "installing docker.io"
        # iptables: dockerd's default bridge networking; ca-certificates for later use of the engine.
        apt_install docker.io iptables ca-certificates
    fi
    need_root "starting dockerd"
    if pgrep -x dockerd >/dev/null 2>&1; then
        say "dockerd is running but not answering yet; waiting"
    else
        say "starting dockerd (log: $LOG)"
        nohup setsid dockerd >"$LOG" 2>&1 </dev/null &
    fi
    for ((i = 0; i < WAIT_S; i++)); do
        if docker_answers; then
            break
        fi
        sleep 1
    done
    if ! docker_answers; then
        say "dockerd did not answer within ${WAIT_S}s; last lines of $LOG:" >&2
        tail -n 30 "$LOG" >&2 2>/dev/null || true
        exit 1
    fi
    say "Docker answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
fi

# debootstrap verifies the bookworm Release file against the Debian archive keyring (not on Ubuntu by default).
if command -v debootstrap >/dev/null 2>&1 && [ -e /usr/share/keyrings/debian-archive-keyring.gpg ]; then
    say "debootstrap already installed"
else
    say "installing debootstrap"
    apt_install debootstrap debian-archive-keyring
fi
