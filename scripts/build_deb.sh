#!/usr/bin/env bash
# Builds the Debian packages edge-agent_<version>_<arch>.deb (Debian 12, Raspberry Pi OS bookworm):
#     scripts/build_deb.sh [--out DIR] [ARCH...]        ARCH: amd64, arm64 (default: both)
# No emulation is needed for arm64: the package carries a wheelhouse, the project's wheel and every
# dependency as CPython 3.11 wheels for the target (manylinux, glibc <= 2.36), and its postinst builds the
# virtual environment under /opt/edge-agent from it, offline, with the target's own python3.
# The dependencies' versions are those of the environment that runs the build ($PYTHON, default .venv's),
# i.e. the versions the tests ran against; dependencies not installed there are resolved afresh.
# Needs pip (and PyPI) to fetch the wheels, and dpkg-deb. Files: packaging/deb/, systemd/, docs/.
set -euo pipefail
umask 022
cd "$(dirname "$0")/.."
repo=$(pwd)

out=dist
arches=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        amd64 | arm64) arches+=("$1"); shift ;;
        *) echo "build_deb: unknown argument '$1' (--out DIR, amd64, arm64)" >&2; exit 2 ;;
    esac
done
[ ${#arches[@]} -gt 0 ] || arches=(amd64 arm64)

python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
command -v dpkg-deb >/dev/null || { echo "build_deb: dpkg-deb is missing (apt install dpkg)" >&2; exit 1; }

version=$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
work=$repo/build/deb
rm -rf "$work"
mkdir -p "$work" "$out"
log=$work/pip.log

run_pip() {  # pip's chatter goes to the log; shown when it fails
    if ! "$python" -m pip --disable-pip-version-check "$@" >>"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "build_deb: pip $1 failed (log: $log)" >&2
        exit 1
    fi
}

echo "build_deb: edge-agent $version: the project's wheel"
run_pip wheel --no-deps --no-cache-dir -w "$work/project" .
project_wheel=$(ls "$work"/project/edge_agent-"$version"-*.whl)

constraints=$work/constraints.txt
if "$python" -m pip show edge-agent >/dev/null 2>&1; then
    "$python" -m pip freeze --exclude-editable | grep -v -i -E '^(edge[-_]agent|-e|#)' >"$constraints"
else
    : >"$constraints"
fi

machine() {
    case "$1" in
        amd64) echo x86_64 ;;
        arm64) echo aarch64 ;;
    esac
}

stage() {  # stage ARCH: the package's tree in $work/root-ARCH
    local arch=$1 root=$work/root-$1 wheels
    local platforms=(--platform "manylinux2014_$(machine "$arch")")
    for glibc in $(seq 17 36); do  # bookworm's glibc is 2.36
        platforms+=(--platform "manylinux_2_${glibc}_$(machine "$arch")")
    done
    wheels=$root/opt/edge-agent/wheels
    mkdir -p "$wheels"
    echo "build_deb: $arch: the dependencies' wheels (CPython 3.11)"
    run_pip download --only-binary=:all: "${platforms[@]}" --python-version 3.11 --implementation cp \
        --abi cp311 -c "$constraints" -d "$wheels" "$project_wheel"
    local foreign
    foreign=$(find "$wheels" -name '*.whl' ! -name '*-none-any.whl' ! -name "*_$(machine "$arch").whl")
    [ -z "$foreign" ] || { echo "build_deb: $arch: wheels for another machine: $foreign" >&2; exit 1; }

    install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/usr/lib/sysusers.d" \
        "$root/etc/edge-agent" "$root/usr/share/doc/edge-agent/docs" "$root/usr/share/doc/edge-agent/examples"
    ln -s /opt/edge-agent/current/bin/edge-agent "$root/usr/bin/edge-agent"
    sed -e 's|^ExecStart=/usr/local/bin/edge-agent |ExecStart=/usr/bin/edge-agent |' \
        systemd/edge-agent.service >"$root/lib/systemd/system/edge-agent.service"
    grep -q '^ExecStart=/usr/bin/edge-agent ' "$root/lib/systemd/system/edge-agent.service"
    sed -e 's|Installed as /etc/sysusers.d/edge-agent.conf|Installed by the package as /usr/lib/sysusers.d/edge-agent.conf|' \
        systemd/edge-agent.sysusers >"$root/usr/lib/sysusers.d/edge-agent.conf"
    install -m 0640 packaging/deb/agent.toml "$root/etc/edge-agent/agent.toml"
    install -m 0644 README.md packaging/deb/copyright "$root/usr/share/doc/edge-agent/"
    install -m 0644 docs/*.md "$root/usr/share/doc/edge-agent/docs/"
    install -m 0644 edge_agent/config/default.toml "$root/usr/share/doc/edge-agent/examples/agent.toml"

    for script in postinst prerm postrm; do
        sed -e "s/@VERSION@/$version/g" "packaging/deb/$script" >"$root/DEBIAN/$script"
        chmod 0755 "$root/DEBIAN/$script"
    done
    echo /etc/edge-agent/agent.toml >"$root/DEBIAN/conffiles"
    # Installed-Size (KiB, for apt's disk check): the package's files and the environment built from them.
    local size
    size=$("$python" - "$wheels" "$(du -sk --exclude=DEBIAN "$root" | cut -f1)" <<'PY'
import pathlib, sys, zipfile
unpacked = sum(i.file_size for w in pathlib.Path(sys.argv[1]).glob("*.whl") for i in zipfile.ZipFile(w).infolist())
print(int(sys.argv[2]) + unpacked // 1024)
PY
    )
    sed -e "s/@VERSION@/$version/g" -e "s/@ARCH@/$arch/g" -e "s/@INSTALLED_SIZE@/$size/g" \
        packaging/deb/control.in >"$root/DEBIAN/control"
    (cd "$root" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' | sort -z |
        xargs -0 md5sum) >"$root/DEBIAN/md5sums"  # conffiles have their own sums
    find "$root" -type d -exec chmod 0755 {} +
}

for arch in "${arches[@]}"; do
    stage "$arch"
    deb=$out/edge-agent_${version}_${arch}.deb
    dpkg-deb --root-owner-group -Zgzip --build "$work/root-$arch" "$deb" >/dev/null
    echo "build_deb: $deb ($(du -h "$deb" | cut -f1))"
done
