"""Write the .deb's /usr/share/doc/fleetd/copyright (Debian machine-readable format 1.0)
and the license files of every third-party distribution the binary bundles.

    python packaging/copyright.py SITE_PACKAGES DOC_DIR

fleetd itself is proprietary (pyproject.toml: license = "LicenseRef-Proprietary"); the
one-file binary also holds the Python distributions pip installed into SITE_PACKAGES
(the runtime dependencies and those of the built-in plugins). Each one's name, version
and license are read from its installed metadata at build time (License-Expression,
else the License field, else the "License ::" classifiers) and listed in the copyright
file; the license files it ships (its .dist-info's License-File entries, or LICENSE*,
COPYING*, NOTICE* there) are copied to DOC_DIR/licenses/<name>/, which the copyright
file points to. Nothing is guessed: a distribution that states no license is listed as
"not stated in its metadata".

Standard library only: it runs with the build interpreter before anything is imported
from the site it describes.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
from pathlib import Path

FORMAT = "https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
# A License field longer than this is the license's whole text (some distributions put
# it there), not a name: it is shipped as a file and listed by its first line.
MAX_LICENSE_NAME = 80
LICENSE_FILE_PREFIXES = ("LICENSE", "LICENCE", "COPYING", "NOTICE", "AUTHORS")

HEADER = f"""\
Format: {FORMAT}
Upstream-Name: fleetd
Upstream-Contact: FleetTracker Pro <ops@fleettracker.example>
Comment: fleetd is proprietary software of FleetTracker Pro; no license to copy,
 modify or redistribute it is granted by this package. /usr/bin/fleetd is a Python
 zipapp that also bundles the third-party distributions listed below, each under
 its own license as its metadata states it. The license files each distribution
 ships are in /usr/share/doc/fleetd/licenses/<distribution>/.

Files: *
Copyright: FleetTracker Pro
License: LicenseRef-Proprietary

Files: usr/share/doc/fleetd/licenses/*
Copyright: the authors of each distribution, as its license files state
License: various
 Each folder holds the license files of one bundled distribution, as it ships them.
"""

PROPRIETARY = """\
License: LicenseRef-Proprietary
 Copyright FleetTracker Pro. All rights reserved. fleetd is not open source (its
 pyproject.toml declares the license "LicenseRef-Proprietary"), and this package
 grants no license to copy, modify or redistribute it.
"""


def license_of(dist: importlib.metadata.Distribution) -> str:
    meta = dist.metadata
    if expression := (meta.get("License-Expression") or "").strip():
        return expression
    text = (meta.get("License") or "").strip()
    if text and text.upper() != "UNKNOWN":
        first = text.splitlines()[0].strip()
        return first if len(first) <= MAX_LICENSE_NAME else first[:MAX_LICENSE_NAME] + "…"
    classifiers = [
        c.split("::")[-1].strip()
        for c in meta.get_all("Classifier") or []
        if c.startswith("License ::") and c.count("::") >= 2
    ]
    return " and ".join(classifiers) or "not stated in its metadata"


def license_files(dist: importlib.metadata.Distribution) -> list[Path]:
    """The license files the distribution's metadata names, else those of its
    .dist-info folder."""
    found: list[Path] = []
    for entry in dist.metadata.get_all("License-File") or []:
        for candidate in (f"licenses/{entry}", entry):
            path = Path(str(dist.locate_file(f"{_info_dir(dist)}/{candidate}")))
            if path.is_file():
                found.append(path)
                break
    if not found:
        info = Path(str(dist.locate_file(_info_dir(dist))))
        found = sorted(
            p
            for p in info.rglob("*")
            if p.is_file() and p.name.upper().startswith(LICENSE_FILE_PREFIXES)
        )
    return found


def _info_dir(dist: importlib.metadata.Distribution) -> str:
    path = getattr(dist, "_path", None)  # PathDistribution: its .dist-info folder
    return Path(str(path)).name if path is not None else ""


def main(site: Path, doc: Path) -> None:
    dists = sorted(
        importlib.metadata.distributions(path=[str(site)]),
        key=lambda d: d.metadata["Name"].lower(),
    )
    lines: list[str] = []
    licenses = doc / "licenses"
    for dist in dists:
        name, version = dist.metadata["Name"], dist.version
        if name.lower() == "fleetd":
            continue  # the package itself: the paragraph "Files: *" above
        copied = license_files(dist)
        target = licenses / name
        for path in copied:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / path.name)
        shipped = f"; license files in licenses/{name}/" if copied else "; ships no license file"
        lines.append(f" {name} {version}: {license_of(dist)}{shipped}")
    listing = "Comment: The bundled distributions (name, version: license as stated):\n"
    text = HEADER.rstrip("\n") + "\n" + listing + "\n".join(lines) + "\n\n" + PROPRIETARY
    text += "\nLicense: various\n See each distribution's own files under licenses/.\n"
    (doc / "copyright").write_text(text, encoding="utf-8")
    print(f"copyright: fleetd and {len(lines)} bundled distributions")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
