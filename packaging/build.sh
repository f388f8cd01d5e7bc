#!/usr/bin/env bash
# Builds, in dist/:
#   fleetd                      one executable file: a shiv zipapp of fleetd, its built-in
#                               plugins and every runtime dependency (CPython 3.11, this
#                               machine's architecture: hiredis, lupa, psycopg and
#                               cryptography ship compiled code)
#   fleetd_<version>_<arch>.deb that file as /usr/bin/fleetd, the systemd unit, sysusers
#                               and tmpfiles entries, /etc/fleetd/fleetd.toml (a conffile),
#                               maintainer scripts, and in /usr/share/doc/fleetd the
#                               copyright file (Debian's machine-readable format: fleetd's
#                               own license and every bundled distribution's), their
#                               license files, README.md, CHANGELOG.md (and changelog.gz)
#                               and docs/*.md
#
# From a fresh clone, by itself: it makes its own build environment in build/venv
# (git-ignored; `python3 -m venv`, then pip, setuptools and shiv at the versions
# constraints.txt pins) and reuses it on the next build. It needs python3 3.11 with the
# venv module, a package index pip can reach (or its cache), and dpkg-deb for the .deb.
#
# Why shiv: a zipapp keeps the installed distributions' metadata, so entry-point plugin
# discovery (importlib.metadata) works unchanged; it unpacks once into $SHIV_ROOT
# (default ~/.shiv; the unit sets /var/cache/fleetd) and starts as fast as a venv
# afterwards. PyInstaller would bundle CPython too but loses entry points unless each
# plugin is declared at build time.
#
# Usage: packaging/build.sh [--zipapp-only]
#   BUILD_PYTHON=…  the interpreter the build environment is made from (python3)
#   PYTHON=…        use this interpreter as it is instead (it needs pip and shiv)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    # The build tools at their pinned versions; the build venv only holds these, the
    # packages of fleetd go to a separate --target below.
    [[ -x build/venv/bin/python ]] || "${BUILD_PYTHON:-python3}" -m venv build/venv
    build/venv/bin/python -m pip install --quiet --disable-pip-version-check \
        -c constraints.txt pip setuptools shiv
    PYTHON=build/venv/bin/python
fi
VERSION=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p dist

# 1. fleetd, its runtime dependencies and those of the built-in plugins (the `builtins`
#    extra) into one site-packages (wheels come from pip's cache after the first build).
#    Not editable, so the zipapp holds the code itself.
#    async-timeout: redis-py needs it on Python < 3.11.3 only, and pip resolves markers
#    for the build interpreter, while the binary runs on the target's python3 (Debian
#    12 ships 3.11.2). Every version is the one constraints.txt pins, as in `make test`.
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    -c constraints.txt --build-constraint constraints.txt \
    --target "$work/site" ".[builtins]" "async-timeout>=4.0.3"
rm -rf "$work/site/bin"

# 2. The zipapp. --reproducible: the same inputs give the same file (and the same
#    unpack directory, so an upgrade unpacks anew and a rebuild does not).
"$PYTHON" -m shiv --site-packages "$work/site" --entry-point fleetd.cli.commands:main \
    --python "/usr/bin/env python3" --reproducible \
    --output-file dist/fleetd
echo "built dist/fleetd ($(du -h dist/fleetd | cut -f1))"
[[ "${1:-}" == "--zipapp-only" ]] && exit 0

# 3. The .deb.
command -v dpkg-deb >/dev/null || { echo "dpkg-deb not found: no .deb built" >&2; exit 3; }
ARCH=$(dpkg --print-architecture)
root="$work/deb"
install -D -m 0755 dist/fleetd "$root/usr/bin/fleetd"
install -D -m 0644 systemd/fleetd.service "$root/usr/lib/systemd/system/fleetd.service"
install -D -m 0644 systemd/fleetd.sysusers "$root/usr/lib/sysusers.d/fleetd.conf"
install -D -m 0644 systemd/fleetd.tmpfiles "$root/usr/lib/tmpfiles.d/fleetd.conf"
# The default config: the repository's annotated fleetd.toml, pointed at a local Redis
# (the embedded memory:// store is for trying fleetd out, not for a server).
install -d "$root/etc/fleetd" "$root/usr/share/doc/fleetd"
sed 's#^url = "memory://"#url = "redis://127.0.0.1:6379/0"#' fleetd.toml > "$root/etc/fleetd/fleetd.toml"
grep -q '^url = "redis://127.0.0.1:6379/0"' "$root/etc/fleetd/fleetd.toml"
chmod 0640 "$root/etc/fleetd/fleetd.toml"
doc="$root/usr/share/doc/fleetd"
install -m 0644 README.md CHANGELOG.md docs/*.md "$doc/"
gzip -9n < CHANGELOG.md > "$doc/changelog.gz"  # Debian's name for the upstream changelog
"$PYTHON" packaging/copyright.py "$work/site" "$doc"
find "$doc" -type d -exec chmod 0755 {} + && find "$doc" -type f -exec chmod 0644 {} +
install -d "$root/DEBIAN"
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" \
    -e "s/@SIZE@/$(du -sk "$root" | cut -f1)/" packaging/deb/control > "$root/DEBIAN/control"
install -m 0644 packaging/deb/conffiles "$root/DEBIAN/conffiles"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
deb="dist/fleetd_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz -z1 --build "$root" "$deb" >/dev/null
echo "built $deb"
