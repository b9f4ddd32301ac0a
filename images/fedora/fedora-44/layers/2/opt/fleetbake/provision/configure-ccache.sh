#!/bin/bash
# Generated from matrix.yml (row fedora-44) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
##  File:  configure-ccache.sh
##  Desc:  ccache for the fleet's builds: a wrapper for every compiler, a system configuration that writes only under the cache volume's mount point, and that folder owned by the build user (the entrypoint turns ccache on only when a volume is mounted there).
set -euo pipefail

user=${WORKER_USER:?WORKER_USER is required}
wrappers=${WRAPPER_DIR:?WRAPPER_DIR is required}   # the family's: Debian /usr/lib/ccache, Fedora /usr/lib64/ccache
cache=${CACHE_DIR:?CACHE_DIR is required}          # where the owner mounts the volume: /ccache
max_size=${MAX_SIZE:?MAX_SIZE is required}         # the default bound; CCACHE_MAXSIZE overrides it at run time
conf=${CCACHE_CONF:-/etc/ccache.conf}              # ccache's system configuration
bindir=${COMPILER_DIR:-/usr/bin}
profile=${PROFILE_DIR:-/etc/profile.d}

ccache=$(command -v ccache) || { echo "configure-ccache: ccache is not installed (add it to the row's packages)" >&2; exit 1; }

# Debian's package makes its wrappers with update-ccache-symlinks, from its postinst and from dpkg triggers
# on the gcc folders only: a clang configured after ccache in the same apt run would have none. Every
# package is in now, so run it once more.
if [ "$wrappers" = /usr/lib/ccache ] && command -v update-ccache-symlinks >/dev/null; then
    update-ccache-symlinks
fi
# Each compiler a build may name (configure finds gcc or cc; the clang configuration sets CC=clang) goes
# through ccache; a wrapper the package did not make is made here, one that is not ccache fails the build.
install -d -m 0755 "$wrappers"
wrapped=()
for compiler in cc c++ gcc g++ clang clang++; do
    [ -x "$bindir/$compiler" ] || continue
    [ -e "$wrappers/$compiler" ] || ln -s "$ccache" "$wrappers/$compiler"
    if [ "$(readlink -f "$wrappers/$compiler")" != "$(readlink -f "$ccache")" ]; then
        echo "configure-ccache: $wrappers/$compiler is not ccache" >&2
        exit 1
    fi
    wrapped+=("$compiler")
done
# No compiler at all (a row that builds no CPython, such as the tests' one-package rows): nothing to wrap.
# With one, configure must find cc and gcc through the wrappers, or some compiles would bypass the cache.
if ((${#wrapped[@]})); then
    for needed in cc gcc; do
        case " ${wrapped[*]} " in
            *" $needed "*) ;;
            *) echo "configure-ccache: no $bindir/$needed to put ccache in front of" >&2; exit 1 ;;
        esac
    done
else
    echo "configure-ccache: no compiler in $bindir (cc, gcc, clang): no wrapper to make"
fi

# Fedora's package puts the wrappers first in every login shell's PATH; here the entrypoint decides, from
# whether a volume is mounted.
rm -f "$profile/ccache.sh" "$profile/ccache.csh"

# The root filesystem is read-only at run time: the cache and ccache's temporary files live on the volume.
cat > "$conf" <<CONF
# fleetbake (configure-ccache.sh): used only when a volume is mounted at $cache; the worker's
# entrypoint then puts $wrappers first in the builds' PATH. Nothing is written outside $cache.
cache_dir = $cache
temporary_dir = $cache/tmp
# Bounded; CCACHE_MAXSIZE overrides it (docker run -e CCACHE_MAXSIZE=10G).
max_size = $max_size
# CPython: Modules/getbuildinfo.c expands __DATE__ and __TIME__, and configure rewrites pyconfig.h
# (new mtime and ctime) in every build.
sloppiness = time_macros,include_file_mtime,include_file_ctime
# The compiler's bytes, not its mtime: an image rebuilt with the same compiler keeps the cache's hits.
compiler_check = content
# Builders check out under /buildarea: paths below it are hashed relative to the working directory.
base_dir = /buildarea
CONF
chmod 0644 "$conf"

# Owned by the build user in the image, so that a fresh named volume mounted here is too.
install -d -o "$user" -g "$user" -m 0750 "$cache"
echo "configure-ccache: $("$ccache" --version | head -n 1); wrappers for ${wrapped[*]:-no compiler} in $wrappers; $conf; $cache for $user"
