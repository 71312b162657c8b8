#!/usr/bin/env python3
"""Fetch the dashboard's third-party browser assets from npm at pinned versions and check them.

The dashboard serves every script itself (site networks are often offline, and a CDN would see who
opens the dashboard), so the files live in `dashboard/web/static/vendor/`. `MANIFEST.json` there is
the one record of what was vendored: package, exact version, npm integrity of the tarball, and the
sha256 of each copied file. This script re-creates the files from npm and refuses when anything
differs from the manifest, so the vendored files are reproducible from the registry.

    python scripts/vendor-assets.py           # fetch from npm (needs npm and the registry), check, write
    python scripts/vendor-assets.py --check   # offline: check the files on disk against the manifest
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[1] / "dashboard" / "web" / "static" / "vendor"
MANIFEST = VENDOR / "MANIFEST.json"


def sha256(data: bytes) -> str:
    """Return the hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def check(manifest: dict) -> list[str]:
    """Return the problems of the files on disk against the manifest (empty when all match)."""
    problems = []
    for package in manifest["packages"]:
        for item in package["files"]:
            path = VENDOR / item["to"]
            if not path.is_file():
                problems.append(f"{item['to']}: missing")
            elif sha256(path.read_bytes()) != item["sha256"]:
                problems.append(f"{item['to']}: sha256 differs from MANIFEST.json")
    return problems


def fetch(manifest: dict) -> None:
    """Download each pinned package with `npm pack`, verify it, and copy the listed files into place."""
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("npm is needed to fetch the vendored assets")
    with tempfile.TemporaryDirectory() as tmp:
        for package in manifest["packages"]:
            spec = f"{package['name']}@{package['version']}"
            out = subprocess.run(
                [npm, "pack", spec, "--json", "--pack-destination", tmp],
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            )
            info = json.loads(out.stdout)[0]
            tarball = Path(tmp) / info["filename"]
            # npm checks the registry's integrity itself; checking it again pins it to our record too.
            algo, _, digest = package["integrity"].partition("-")
            actual = base64.b64encode(hashlib.new(algo, tarball.read_bytes()).digest()).decode()
            if actual != digest:
                sys.exit(f"{spec}: tarball integrity {algo}-{actual} is not the pinned one")
            with tarfile.open(tarball) as tar:
                for item in package["files"]:
                    member = tar.extractfile(f"package/{item['from']}")
                    if member is None:
                        sys.exit(f"{spec}: {item['from']} is not a file in the package")
                    data = member.read()
                    if sha256(data) != item["sha256"]:
                        sys.exit(f"{spec}: {item['from']} sha256 {sha256(data)} differs from MANIFEST.json")
                    target = VENDOR / item["to"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
            print(f"{spec}: {len(package['files'])} files written")


def main() -> None:
    """Fetch (default) or only check (--check) the vendored assets."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only check the files on disk (offline)")
    args = parser.parse_args()
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    if not args.check:
        fetch(manifest)
    problems = check(manifest)
    if problems:
        sys.exit("\n".join(problems))
    print("vendored assets match MANIFEST.json")


if __name__ == "__main__":
    main()
