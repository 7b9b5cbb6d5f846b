#!/usr/bin/env bash
# The set-up step that both README commands and .ci/run call first: installs the Debian packages
# that ddm's build, examples and tests need, and only those that are missing. Running it again
# changes nothing. The list below is the only list of packages in the repository: an example that
# needs a new package adds it here.
#
#   tools/setup.sh          install what is missing (as root, or through sudo)
#   tools/setup.sh --check  only say what is missing; exit 1 when something is
set -euo pipefail

packages=(
  git cmake ninja-build g++ python3               # the build itself and the example checks
  libeigen3-dev nlohmann-json3-dev                 # ddm::eigen, ddm::json; ddm-paradox needs both
  libgtest-dev libgmock-dev libbenchmark-dev       # tests and benchmarks
  libopenblas-dev libboost-dev                     # examples/02_dit (CBLAS), the peer benchmarks
  clang libclang-rt-dev                            # the safetensors fuzz test (libFuzzer)
  zlib1g-dev libpng-dev dataset-fashion-mnist      # examples/03_fashion (learned Fashion-MNIST DDM)
  openmpi-bin libopenmpi-dev                       # ddm::mpi, the distributed tests (mpirun -np 2, 4)
)

check_only=0
case "${1:-}" in
  "") ;;
  --check) check_only=1 ;;
  -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "setup: unknown option '$1' (expected --check or --help)" >&2; exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "setup: this script installs Debian packages and needs dpkg; on another system install the" \
       "equivalents of: ${packages[*]}" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages are installed"
  exit 0
fi
if ((check_only)); then
  echo "setup: missing: ${missing[*]}"
  exit 1
fi

as_root=()
if [[ $(id -u) -ne 0 ]]; then
  # sudo without a password, or one that can ask for it on this terminal.
  if command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || [[ -t 0 ]]; }; then
    as_root=(sudo)
  else
    echo "setup: these Debian packages are missing: ${missing[*]}" >&2
    echo "setup: installing them needs root, and this user is not root and cannot use sudo." >&2
    echo "setup: ask an administrator to run:  apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

echo "setup: installing ${missing[*]}"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: installed ${missing[*]}"
