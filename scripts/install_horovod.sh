#!/usr/bin/env bash
# Builds and installs Horovod (version pinned in requirements-horovod.txt) against
# the TensorFlow of one Python environment.
#
# Usage:
#   scripts/install_horovod.sh [PYTHON]      # e.g. scripts/install_horovod.sh .venv/bin/python
#   PYTHON=.venv/bin/python scripts/install_horovod.sh
#   FORCE=1 scripts/install_horovod.sh ...   # rebuild even if Horovod is already there
#   HOROVOD_GPU_OPERATIONS=NCCL scripts/install_horovod.sh ...   # GPU build without a GPU
#                                                                # (docker build)
#
# Horovod has no binary wheels: pip compiles it against the TensorFlow already
# installed in that environment (hence --no-build-isolation). What this script
# decides:
#   * Debian/Ubuntu packages cmake, make, g++, libfarmhash-dev (TF 2.18's headers
#     include <farmhash.h>) and the Python headers, installed only when missing
#     (with sudo when not root);
#   * always the TensorFlow framework and Gloo (horovodrun --gloo needs no MPI);
#   * MPI only when `mpirun` is on PATH; NCCL GPU collectives when `nvidia-smi`
#     is (or HOROVOD_GPU_OPERATIONS is set).
# Idempotent: exits early when that Horovod version with the same capabilities
# already imports in that environment.
set -euo pipefail

PYTHON="${1:-${PYTHON:-python3}}"
REQUIREMENTS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/requirements-horovod.txt"

log() { echo "[install_horovod] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ -f "$REQUIREMENTS" ]] || die "$REQUIREMENTS not found; run this script from a checkout of the project."
HOROVOD_VERSION="$(sed -n 's/^horovod==\([0-9.]*\).*/\1/p' "$REQUIREMENTS")"
[[ -n "$HOROVOD_VERSION" ]] || die "no 'horovod==<version>' line in $REQUIREMENTS."
command -v "$PYTHON" >/dev/null 2>&1 \
  || die "Python '$PYTHON' not found; pass the environment's python as the first argument (e.g. .venv/bin/python)."

# --- build flags -------------------------------------------------------------
export CMAKE_POLICY_VERSION_MINIMUM=3.5   # Horovod's CMake files predate CMake 4
export HOROVOD_WITH_TENSORFLOW=1
export HOROVOD_WITH_GLOO=1
export HOROVOD_WITHOUT_PYTORCH=1
export HOROVOD_WITHOUT_MXNET=1
if command -v mpirun >/dev/null 2>&1; then
  export HOROVOD_WITH_MPI=1
  unset HOROVOD_WITHOUT_MPI
else
  export HOROVOD_WITHOUT_MPI=1
  unset HOROVOD_WITH_MPI
fi
if [[ -z "${HOROVOD_GPU_OPERATIONS:-}" ]] && command -v nvidia-smi >/dev/null 2>&1; then
  export HOROVOD_GPU_OPERATIONS=NCCL
fi

already_installed() {
  "$PYTHON" - "$HOROVOD_VERSION" "${HOROVOD_WITH_MPI:-0}" "${HOROVOD_GPU_OPERATIONS:-}" <<'EOF' >/dev/null 2>&1
import sys
import horovod
import horovod.tensorflow as hvd
version, want_mpi, gpu_ops = sys.argv[1:4]
assert horovod.__version__ == version, horovod.__version__
assert hvd.gloo_built()
assert want_mpi != "1" or hvd.mpi_built()
assert gpu_ops != "NCCL" or hvd.nccl_built()
EOF
}

if [[ "${FORCE:-0}" != "1" ]] && already_installed; then
  log "horovod==$HOROVOD_VERSION (TensorFlow, Gloo${HOROVOD_WITH_MPI:+, MPI}${HOROVOD_GPU_OPERATIONS:+, NCCL}) already works with $PYTHON; nothing to do (FORCE=1 rebuilds)."
  exit 0
fi

"$PYTHON" -c "import tensorflow" 2>/dev/null \
  || die "TensorFlow does not import with '$PYTHON'; install requirements.txt into that environment first (Horovod is compiled against it)."

# --- system packages, only the missing ones --------------------------------
py_include="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
py_version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
[[ -f /usr/include/farmhash.h || -f /usr/local/include/farmhash.h ]] || missing+=(libfarmhash-dev)
[[ -f "$py_include/Python.h" ]] || missing+=("python${py_version}-dev")

if ((${#missing[@]})); then
  command -v apt-get >/dev/null 2>&1 \
    || die "missing ${missing[*]} and this is not a Debian/Ubuntu system; install them with your package manager and re-run."
  sudo_cmd=()
  if [[ "$(id -u)" != "0" ]]; then
    command -v sudo >/dev/null 2>&1 || die "missing ${missing[*]}; run as root or install sudo."
    sudo_cmd=(sudo)
  fi
  log "installing Debian packages: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- build -------------------------------------------------------------------
pip_flags=(--no-build-isolation)
# A wheel cached from a CPU build must not be reused for a GPU build.
[[ -z "${HOROVOD_GPU_OPERATIONS:-}" ]] || pip_flags+=(--no-cache-dir)
[[ "${FORCE:-0}" != "1" ]] || pip_flags+=(--force-reinstall --no-deps --no-cache-dir)

log "building horovod==$HOROVOD_VERSION for $PYTHON (MPI: ${HOROVOD_WITH_MPI:-no}, GPU operations: ${HOROVOD_GPU_OPERATIONS:-none}); about 5-10 minutes on 2 cores"
start=$(date +%s)
# The build is not isolated, so its own build tools must be installed first.
"$PYTHON" -m pip install --quiet "setuptools<81" wheel packaging
"$PYTHON" -m pip install "${pip_flags[@]}" -r "$REQUIREMENTS"

already_installed \
  || die "horovod was built but 'import horovod.tensorflow' (with the requested capabilities) fails with $PYTHON; see the pip build log above."
log "done in $(( $(date +%s) - start )) s: $("$PYTHON" -c 'import horovod, horovod.tensorflow as h; print("horovod", horovod.__version__, "gloo", bool(h.gloo_built()), "mpi", bool(h.mpi_built()), "nccl", bool(h.nccl_built()))' 2>/dev/null)"
