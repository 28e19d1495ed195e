#!/bin/sh
# Finishes the osca sandbox root file system. Runs as root inside the new root: via `chroot` after
# debootstrap (`osca sandbox build`), or as a RUN step of the Dockerfile. POSIX sh: minbase has no extras.
set -eu

# Users. `sandbox` (1000) runs candidate tests; its home /scratch is a tmpfs at run time, so nothing is
# written there now. `job` (1001) is the warm pool's user.
getent group sandbox >/dev/null || groupadd --gid 1000 sandbox
getent passwd sandbox >/dev/null || useradd --uid 1000 --gid 1000 --no-create-home --home-dir /scratch \
    --shell /bin/sh sandbox
getent group job >/dev/null || groupadd --gid 1001 job
getent passwd job >/dev/null || useradd --uid 1001 --gid 1001 --no-create-home --home-dir /job \
    --shell /bin/sh job

# Mount points / working directories.
mkdir -p /scratch /job
chown 1000:1000 /scratch
chown 1001:1001 /job
chmod 0755 /scratch /job

# Keep the image small: no package caches, documentation, manuals or translations.
apt-get clean 2>/dev/null || true
rm -rf /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/lib/apt/lists/* \
    /usr/share/doc /usr/share/man /usr/share/locale /usr/share/info
rm -rf /tmp/* /var/tmp/* /var/log/*.log /var/log/apt/* /var/cache/debconf/*-old
