# Shared by scripts/test and scripts/sandbox: install what Atoll's tests and
# sandbox need when it is missing, from the distribution's packages. Source
# it; it defines functions and changes nothing by itself.

log() { printf '\n== %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1
  fi
}

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The PostgreSQL server binaries' folder (initdb, pg_ctl, postgres).
find_pg_bindir() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  done
  command -v initdb >/dev/null && dirname "$(readlink -f "$(command -v initdb)")" && return 0
  return 1
}

# Exports ATOLL_PG_BINDIR, installing the PostgreSQL server when missing:
# throwaway test databases and the sandbox's tenant databases run on it.
ensure_postgres() {
  if ! ATOLL_PG_BINDIR=$(find_pg_bindir); then
    log "installing PostgreSQL server binaries"
    apt_install postgresql
    ATOLL_PG_BINDIR=$(find_pg_bindir)
  fi
  export ATOLL_PG_BINDIR
}

# The channel rust-toolchain.toml pins (for example 1.95.0).
pinned_rust() { sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml; }

# Makes the pinned toolchain usable without surprises. When rustup lacks it
# but its default toolchain is that same release, the default is linked under
# the pinned name (no download); otherwise rustup installs it. When neither
# works, or the pinned toolchain cannot get clippy and rustfmt, the default
# toolchain is used through RUSTUP_TOOLCHAIN, which says so loudly.
# Exports ATOLL_NO_CLIPPY / ATOLL_NO_RUSTFMT when a component is missing.
ensure_rust_toolchain() {
  local want have toolchains
  want=$(pinned_rust)
  if command -v rustup >/dev/null && [ -n "$want" ] && [ -z "${RUSTUP_TOOLCHAIN:-}" ]; then
    toolchains=$(rustup toolchain list)
    if ! grep -q "^$want-" <<<"$toolchains"; then
      have=$(cd / && rustc --version | awk '{print $2}')
      local home="${RUSTUP_HOME:-$HOME/.rustup}" host default
      host=$(cd / && rustc -vV | sed -n 's/^host: //p')
      default=$(cd / && rustup default | awk '{print $1}')
      if [ "$have" = "$want" ] && [ -d "$home/toolchains/$default" ]; then
        log "linking the default toolchain ($default, rustc $have) as $want"
        ln -s "$home/toolchains/$default" "$home/toolchains/$want-$host"
      else
        log "installing Rust $want (rust-toolchain.toml)"
        rustup toolchain install "$want" --profile minimal -c clippy -c rustfmt \
          || { log "WARNING: cannot install Rust $want; building with the default toolchain (rustc $have)"
               export RUSTUP_TOOLCHAIN="$default"; }
      fi
    fi
    if [ -z "${RUSTUP_TOOLCHAIN:-}" ]; then
      local component
      for component in clippy rustfmt; do
        rustup component list --toolchain "$want" --installed 2>/dev/null | grep -q "^$component" \
          || rustup component add --toolchain "$want" "$component" >/dev/null 2>&1 \
          || { log "WARNING: Rust $want has no $component and it cannot be installed"
               export RUSTUP_TOOLCHAIN="$want"; }
      done
    fi
  fi
  cargo clippy --version >/dev/null 2>&1 || export ATOLL_NO_CLIPPY=1
  cargo fmt --version >/dev/null 2>&1 || export ATOLL_NO_RUSTFMT=1
  log "Rust: $(rustc --version)"
}

# Exports ATOLL_S3_SERVER_BIN (and ATOLL_S3_REQUIRED=1): an S3-compatible
# server (s3s-fs, objects in a directory) that the internal-storage tests
# run against. Built from the Rust registry once, cached outside the
# repository under $1 (the tools folder). Pinned: later releases need a newer
# Rust than rust-toolchain.toml's.
S3S_FS_VERSION=0.14.1
ensure_s3_server() {
  local root="$1/s3s-fs"
  if [ ! -x "$root/bin/s3s-fs" ]; then
    log "installing s3s-fs (an S3-compatible server for the storage tests)"
    cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked --root "$root" --quiet
  fi
  export ATOLL_S3_SERVER_BIN="$root/bin/s3s-fs" ATOLL_S3_REQUIRED=1
}
