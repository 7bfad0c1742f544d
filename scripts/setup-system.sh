#!/usr/bin/env bash
# Install the system packages pymem needs on Debian 12, and build pgvector for
# PostgreSQL 15 from Debian's own source package. Idempotent: every step checks
# first and skips what is already present. Needs root (or sudo) only when
# something is missing.
set -euo pipefail

PG_MAJOR=${PG_MAJOR:-15}
PGVECTOR_SUITE=${PGVECTOR_SUITE:-trixie}

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@";
    elif command -v sudo >/dev/null 2>&1; then sudo "$@";
    else log "need root to run: $*"; exit 1; fi
}

# The Debian archive this machine already uses (deb822 or one-line sources),
# so the source entry for pgvector points at the same mirror.
debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    local uri
    uri=$(awk '/^URIs:/ {u=$2} /^Suites:/ && $0 ~ /bookworm( |$)/ {print u; exit}' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null)
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list)
    fi
    echo "$uri"
}

apt_updated=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$apt_updated" -eq 0 ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_install "postgresql-$PG_MAJOR" postgresql-contrib "postgresql-server-dev-$PG_MAJOR" \
    postgresql-client-$PG_MAJOR redis-server redis-tools build-essential dpkg-dev \
    python3-venv python3-dev ca-certificates prometheus "postgresql-$PG_MAJOR-partman" \
    "postgresql-$PG_MAJOR-cron"

PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
EXT_DIR=$($PG_CONFIG --sharedir)/extension
if [ -f "$EXT_DIR/vector.control" ]; then
    log "pgvector already installed"
else
    log "building pgvector from Debian's source package ($PGVECTOR_SUITE)"
    src_list=/etc/apt/sources.list.d/pymem-pgvector-src.list
    if [ ! -f "$src_list" ]; then
        mirror=$(debian_mirror)
        if [ -z "$mirror" ]; then
            log "cannot find this machine's Debian mirror in /etc/apt; set DEBIAN_MIRROR"
            exit 1
        fi
        echo "deb-src $mirror $PGVECTOR_SUITE main" | as_root tee "$src_list" >/dev/null
    fi
    as_root apt-get update -qq
    work=$(mktemp -d)
    chmod 755 "$work"
    ( cd "$work" && apt-get source -o APT::Sandbox::User=root --download-only -qq pgvector >/dev/null && dpkg-source -x --no-check ./pgvector_*.dsc src >/dev/null )
    make -s -C "$work/src" PG_CONFIG="$PG_CONFIG" >/dev/null
    as_root make -s -C "$work/src" PG_CONFIG="$PG_CONFIG" install >/dev/null
    rm -rf "$work"
    log "pgvector installed into $EXT_DIR"
fi
