# Sourced by the project's scripts: where caches live (outside the checkout,
# so fresh clones reuse them) and the ccache settings that make a clone in
# another folder hit the same cache entries.
#   cache: ${AGENTD_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/agentd}
cache="${AGENTD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentd}"
export CCACHE_DIR="${CCACHE_DIR:-$cache/ccache}"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
# Paths under the checkout are hashed relative to it, and the working
# directory is left out of the hash: /tmp/ci-1/... and /work/main/... share
# entries.
CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export CCACHE_BASEDIR
export CCACHE_NOHASHDIR=true
