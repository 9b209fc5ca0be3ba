# Shared by benches/compare/all and benches/compare/scaling/run (sourced, not run): the three
# builders set up side by side, `measure` (every tool's run 1, then every tool's run 2, ...:
# interleaved, so a burst of load hits all tools alike), load and peak-RSS capture, one CSV
# row per timed build.
#
# Builders:
#   docker   docker 28.5's BuildKit from ../shared/tools/modern-buildkit, a private dockerd
#            of scripts/dockerd in $BENCH_DIR/dockerd (containerd image store), its own
#            DOCKER_CONFIG; client $MODERN_DOCKER; bases by `rbuild save --format docker` +
#            `docker load`.
#   buildah  Debian's buildah 1.28, `bud --layers --runtime /usr/sbin/runc --isolation oci`,
#            storage (overlay) and TMPDIR (its cache mounts) under $BENCH_DIR/buildah; bases
#            by `buildah pull docker-archive:` of the same archive.
#   rbuild   $RBUILD_BIN (default target/release/rbuild) with --root $BENCH_DIR/rbuild-root.
#
# Environment: RUNS (default 5), RBUILD_BIN, RBUILD_BENCH_DIR (scratch, stores, default
# /tmp/rbuild-bench), BENCH_LOAD_OK=1 (run although load1 > 0.5), BENCH_REV (the rev
# column; default `git rev-parse --short HEAD` of this clone, "+dirty" when tracked files
# differ), BENCH_TIMEOUT (seconds one build may take before it is stopped and recorded as
# failed:124, default 1800: a stuck build must not eat a whole benchmark window).
# shellcheck shell=bash

bench_lib="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly bench_lib
bench_repo="$(cd "$bench_lib/../.." && pwd)"
readonly bench_repo
readonly runs="${RUNS:-5}"
readonly rbuild_bin="${RBUILD_BIN:-$bench_repo/target/release/rbuild}"
readonly work="${RBUILD_BENCH_DIR:-/tmp/rbuild-bench}"
readonly rbuild_root="$work/rbuild-root"
readonly buildah_flags=(--root "$work/buildah/root" --runroot "$work/buildah/run" --storage-driver overlay)
readonly buildah_tmp="$work/buildah/tmp"
readonly dockerd_dir="$work/dockerd"
readonly load_limit=0.5
readonly build_timeout="${BENCH_TIMEOUT:-1800}"
# PATH given to the Debian-based bases (a rootfs tarball carries no config).
readonly debian_path=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() {
  echo "bench: $*" >&2
  exit 1
}

note() {
  echo "bench: $*" >&2
}

case "$runs" in
  '' | *[!0-9]* | 0) die "RUNS must be a positive number, not $runs" ;;
esac
case "$build_timeout" in
  '' | *[!0-9]* | 0) die "BENCH_TIMEOUT must be a positive number of seconds, not $build_timeout" ;;
esac

bench_rev() {
  if [ -n "${BENCH_REV:-}" ]; then
    echo "$BENCH_REV"
    return
  fi
  local rev
  rev="$(git -C "$bench_repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  [ -z "$(git -C "$bench_repo" status --porcelain --untracked-files=no 2>/dev/null)" ] || rev="$rev+dirty"
  echo "$rev"
}

load1() {
  cut -d' ' -f1 /proc/loadavg
}

# Refuses to start on a busy machine: timings above load1 0.5 mostly measure the others.
check_load() {
  local l
  l="$(load1)"
  if awk -v l="$l" -v m="$load_limit" 'BEGIN { exit !(l > m) }'; then
    [ "${BENCH_LOAD_OK:-0}" = 1 ] ||
      die "load1 is $l (> $load_limit): other work would be measured too; wait, or set BENCH_LOAD_OK=1 (the CSV records the load of every run)"
    note "load1 is $l (> $load_limit); going on because BENCH_LOAD_OK=1"
  fi
}

# A CSV field: quoted when it holds a comma, a quote or a space.
csv_field() {
  case "$1" in
    *[,\"\ ]*) printf '"%s"' "${1//\"/\"\"}" ;;
    *) printf '%s' "$1" ;;
  esac
}

# Prints its arguments as one CSV line.
csv_line() {
  local first=1 f
  for f in "$@"; do
    [ "$first" = 1 ] || printf ','
    first=0
    csv_field "$f"
  done
  printf '\n'
}

# ---- the tools ------------------------------------------------------------------------

declare -A tool_versions=()

tool_version() {
  if [ -z "${tool_versions[$1]:-}" ]; then
    case "$1" in
      docker) tool_versions[docker]="$("$docker" version --format '{{.Server.Version}}' 2>/dev/null || echo '?')" ;;
      buildah) tool_versions[buildah]="$(buildah --version | awk '{ print $3 }')" ;;
      rbuild) tool_versions[rbuild]="$("$rbuild_bin" --version | awk '{ print $2 }')@$(bench_rev)" ;;
    esac
  fi
  echo "${tool_versions[$1]}"
}

check_tools() {
  local tool
  for tool in "$@"; do
    case "$tool" in
      docker | buildah | rbuild) ;;
      *) die "unknown tool $tool (known: docker buildah rbuild)" ;;
    esac
  done
}

setup_docker() {
  local exports
  exports="$("$bench_repo/../shared/tools/modern-buildkit" 2>/dev/null || /work/shared/tools/modern-buildkit)" ||
    die "cannot install docker 28.5 (../shared/tools/modern-buildkit)"
  eval "$exports"
  docker="$MODERN_DOCKER"
  export RBUILD_DOCKERD_DIR="$dockerd_dir" RBUILD_DOCKERD_BIN="$MODERN_DOCKERD"
  export RBUILD_DOCKERD_CONTAINERD_STORE="${RBUILD_DOCKERD_CONTAINERD_STORE:-1}"
  export DOCKER_CONFIG="$work/docker-config"
  mkdir -p "$DOCKER_CONFIG"
  # buildah reads DOCKER_CONFIG for credentials too, and wants the file to exist.
  [ -f "$DOCKER_CONFIG/config.json" ] || echo '{}' >"$DOCKER_CONFIG/config.json"
  "$bench_repo/scripts/dockerd" start
  export "$("$bench_repo/scripts/dockerd" env)"
}

stop_docker() {
  [ -n "${RBUILD_DOCKERD_DIR:-}" ] || return 0
  "$bench_repo/scripts/dockerd" stop || note "stopping the private dockerd failed"
}

setup_buildah() {
  command -v buildah >/dev/null 2>&1 || die "missing tool buildah (install the Debian package buildah)"
  [ -x /usr/sbin/runc ] || die "missing /usr/sbin/runc (install the Debian package runc)"
  mkdir -p "$work/buildah" "$buildah_tmp"
}

setup_rbuild() {
  [ -x "$rbuild_bin" ] || die "missing $rbuild_bin (cargo build --release -p rbuild-cli)"
}

# Makes base image NAME from fixture FIXTURE (fixtures/base-images/make) in every tool's
# store: rbuild imports the rootfs (Debian bases get PATH), saves it as a docker archive,
# which docker loads and buildah pulls, so the three start from one image.
load_base() {
  local name="$1" fixture="$2" tar archive changes=() tool
  [ "$fixture" = busybox ] || changes=(-c "ENV $debian_path")
  tar="$("$bench_repo/fixtures/base-images/make" "$fixture")" || die "fixtures/base-images/make $fixture failed"
  archive="$work/bases/$fixture.docker.tar"
  mkdir -p "$work/bases"
  "$rbuild_bin" import --root "$rbuild_root" "${changes[@]}" "$tar" "$name" >/dev/null ||
    die "rbuild import $tar failed"
  [ -f "$archive" ] || "$rbuild_bin" save --root "$rbuild_root" --progress quiet --format docker -o "$archive" "$name" >/dev/null ||
    die "rbuild save $name failed"
  for tool in "${tools[@]}"; do
    case "$tool" in
      docker) "$docker" load -q -i "$archive" >/dev/null || die "docker load $archive failed" ;;
      buildah)
        buildah "${buildah_flags[@]}" inspect --type image "$name" >/dev/null 2>&1 ||
          buildah "${buildah_flags[@]}" pull -q "docker-archive:$archive" >/dev/null ||
          die "buildah pull docker-archive:$archive failed"
        # The archive's name is docker.io/library/busybox or the like; give it the short
        # name the Dockerfiles use too.
        buildah "${buildah_flags[@]}" tag "$(buildah "${buildah_flags[@]}" images -q --filter reference="*$name" | head -n 1 ||
          true)" "$name" >/dev/null 2>&1 || true
        ;;
    esac
  done
}

# Sets CMD to TOOL's build of Dockerfile FILE in CONTEXT tagged TAG, with the flags after
# `--`, which every tool takes in docker's spelling: --no-cache, --build-arg K=V, --jobs N
# (dropped for docker: BuildKit has no such limit), -o/--output TYPE (tar or oci, with
# dest=: buildah makes oci with a push to oci-archive:). BUILD_PROGRESS=rawjson gives docker
# and rbuild `--progress rawjson` (per-step times, see step-time) instead of plain.
build_cmd() {
  local tool="$1" file="$2" context="$3" tag="$4" extra=() out='' progress="${BUILD_PROGRESS:-plain}"
  shift 4
  [ "${1:-}" = -- ] && shift
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --jobs)
        [ "$tool" = docker ] || extra+=(--jobs "$2")
        shift 2
        ;;
      -o | --output)
        out="$2"
        shift 2
        ;;
      *)
        extra+=("$1")
        shift
        ;;
    esac
  done
  case "$tool" in
    docker)
      CMD=("$docker" build --network=host "--progress=$progress" -f "$file" -t "$tag" "${extra[@]}")
      [ -z "$out" ] || CMD+=(-o "$out")
      CMD+=("$context")
      ;;
    buildah)
      CMD=(env "TMPDIR=$buildah_tmp" buildah "${buildah_flags[@]}" bud --layers --runtime /usr/sbin/runc
        --isolation oci --network host --quiet -f "$file" -t "$tag" "${extra[@]}")
      case "$out" in
        '') CMD+=("$context") ;;
        type=tar,dest=*) CMD+=(--output "$out" "$context") ;;
        type=oci,dest=*)
          local q
          q="$(printf '%q ' "${CMD[@]}" "$context")"
          CMD=(sh -c "$q && buildah $(printf '%q ' "${buildah_flags[@]}") push -q $(printf '%q' "$tag") oci-archive:$(printf '%q' "${out#type=oci,dest=}")")
          ;;
        *) die "build_cmd: no buildah spelling for -o $out" ;;
      esac
      ;;
    rbuild)
      CMD=("$rbuild_bin" build --root "$rbuild_root" --network host --allow network.host --progress "$progress"
        -f "$file" -t "$tag" "${extra[@]}")
      [ -z "$out" ] || CMD+=(-o "$out")
      CMD+=("$context")
      ;;
  esac
}

# ---- daemon-side peak RSS (docker only) ------------------------------------------------

# dockerd and the containerd it started (BuildKit runs inside dockerd).
daemon_pids() {
  local pid
  pid="$(cat "$dockerd_dir/dockerd.pid" 2>/dev/null)" || return 0
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 0
  echo "$pid"
  ps -o pid=,comm= --ppid "$pid" | awk '$2 ~ /^containerd/ { print $1 }'
}

# Resets the peak-RSS watermark (VmHWM) of the daemon's processes.
daemon_reset_peak() {
  local p
  for p in $(daemon_pids); do
    echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true
  done
}

# Sum of the daemon processes' VmHWM since the reset, KiB.
daemon_peak() {
  local p sum=0 v
  for p in $(daemon_pids); do
    v="$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null)"
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

# ---- measuring ------------------------------------------------------------------------

# The CSV of `all`; scaling/run defines its own `record`.
readonly csv_columns=(row tool version run seconds peak_rss_kib daemon_peak_rss_kib load1_before load1_after status rev note command)

csv_header() {
  [ -s "$1" ] || csv_line "${csv_columns[@]}" >"$1"
}

# record ROW TOOL RUN SECONDS CLIENT_RSS_KIB DAEMON_RSS_KIB LOAD_BEFORE LOAD_AFTER STATUS NOTE
# (CMD holds the command).
record() {
  csv_line "$1" "$2" "$(tool_version "$2")" "$3" "$4" "$5" "$6" "$7" "$8" "$9" "$(bench_rev)" "${10}" \
    "$(printf '%q ' "${CMD[@]}" | sed 's/ $//')" >>"$BENCH_CSV"
}

# measure ROW CMDFN [BEFOREFN [NOTEFN]]
#   For run 1..RUNS, for each tool of $tools: BEFOREFN TOOL (untimed; e.g. change a file),
#   CMDFN TOOL (sets CMD), then CMD is timed (date +%s%N around it) under /usr/bin/time -f %M
#   (the client's peak RSS: the largest process among the client and the children it waited
#   for), under `timeout BENCH_TIMEOUT` (exit 124 when it ran out); for docker the daemon's
#   VmHWM is reset before and read after. NOTEFN TOOL, if
#   given, prints a note from the run's output ($work/run.log). With MEASURE_WARM=1 each
#   tool builds once untimed first (no-op rows). MEASURE_RUNS=N runs the row N times instead
#   of RUNS. A failed build is recorded with status=failed:<exit code> and that tool's
#   further runs of the row are skipped.
measure() {
  local row="$1" cmdfn="$2" before="${3:-}" notefn="${4:-}" tool r start end lb la rss drss status notes
  local n="${MEASURE_RUNS:-$runs}"
  declare -A failed=()
  case "$n" in
    '' | *[!0-9]* | 0) die "$row: the number of runs must be a positive number, not $n" ;;
  esac
  note "$row: $n run(s) of ${tools[*]} (load1 $(load1))"
  if [ "${MEASURE_WARM:-0}" = 1 ]; then
    for tool in "${tools[@]}"; do
      "$cmdfn" "$tool"
      timeout --foreground -k 30 "$build_timeout" "${CMD[@]}" >"$work/run.log" 2>&1 ||
        note "$row: $tool's warm-up build failed: $(tail -n 5 "$work/run.log")"
      cat "$work/run.log" >>"$work/all.log"
    done
  fi
  for r in $(seq 1 "$n"); do
    for tool in "${tools[@]}"; do
      [ -z "${failed[$tool]:-}" ] || continue
      [ -z "$before" ] || "$before" "$tool"
      "$cmdfn" "$tool"
      [ "$tool" != docker ] || daemon_reset_peak
      lb="$(load1)"
      start="$(date +%s%N)"
      if /usr/bin/time -f '%M' -o "$work/rss" timeout --foreground -k 30 "$build_timeout" "${CMD[@]}" >"$work/run.log" 2>&1; then
        status=ok
      else
        status="failed:$?"
      fi
      end="$(date +%s%N)"
      la="$(load1)"
      cat "$work/run.log" >>"$work/all.log"
      rss="$(tail -n 1 "$work/rss" | grep -E '^[0-9]+$' || echo '')"
      drss=
      [ "$tool" != docker ] || drss="$(daemon_peak)"
      notes=
      if [ "$status" != ok ]; then
        failed[$tool]=1
        notes="$(tail -n 3 "$work/run.log" | tr '\n' ' ' | cut -c1-300)"
        [ "$status" != failed:124 ] || notes="timed out after $build_timeout s (BENCH_TIMEOUT): $notes"
        note "$row: $tool run $r $status: $notes"
      elif [ -n "$notefn" ]; then
        notes="$("$notefn" "$tool" 2>/dev/null || true)"
      fi
      record "$row" "$tool" "$r" "$(awk -v ns="$((end - start))" 'BEGIN { printf "%.3f", ns / 1e9 }')" \
        "$rss" "$drss" "$lb" "$la" "$status" "$notes"
    done
  done
}
