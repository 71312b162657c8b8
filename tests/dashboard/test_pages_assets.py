"""The pages' assets are local, pinned and reproducible: vendored files match their manifest, the chime is
rebuilt byte for byte by its script, and no template or script loads anything from another host."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "dashboard" / "web"


def load_script(name: str) -> ModuleType:
    """Import a script of scripts/ (their names have dashes) as a module."""
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vendored_files_match_the_manifest_and_carry_their_licence() -> None:
    vendor = load_script("vendor-assets")
    manifest = json.loads(vendor.MANIFEST.read_text(encoding="utf-8"))
    assert vendor.check(manifest) == []
    for package in manifest["packages"]:
        # Exact versions only: a range would let a re-fetch bring in something nobody reviewed.
        assert re.fullmatch(r"\d+\.\d+\.\d+", package["version"]), package["version"]
        assert package["integrity"].startswith("sha512-")
        targets = [item["to"] for item in package["files"]]
        assert any("LICENSE" in t for t in targets), f"{package['name']} ships no licence file"
    listed = {item["to"] for p in manifest["packages"] for item in p["files"]}
    on_disk = {p.relative_to(vendor.VENDOR).as_posix() for p in vendor.VENDOR.rglob("*") if p.is_file()} - {
        "MANIFEST.json"
    }
    assert on_disk == listed, "every vendored file is in MANIFEST.json, and only those"


def test_a_changed_vendored_file_is_caught(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    vendor = load_script("vendor-assets")
    manifest = json.loads(vendor.MANIFEST.read_text(encoding="utf-8"))
    copy = tmp_path / "vendor"
    for package in manifest["packages"]:
        for item in package["files"]:
            target = copy / item["to"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((vendor.VENDOR / item["to"]).read_bytes())
    first = manifest["packages"][0]["files"][0]["to"]
    (copy / first).write_bytes((copy / first).read_bytes() + b"\n// injected")
    monkeypatch.setattr(vendor, "VENDOR", copy)
    assert vendor.check(manifest) == [f"{first}: sha256 differs from MANIFEST.json"]


def test_the_chime_is_rebuilt_byte_for_byte_by_its_script() -> None:
    chime = load_script("make-chime")
    committed = (WEB / "static" / "sounds" / "chime.wav").read_bytes()
    assert chime.render() == committed
    assert committed[:4] == b"RIFF" and committed[8:12] == b"WAVE"
    assert 0.5 < (len(committed) - 44) / 2 / chime.RATE < 1.5, "a short cue, not a siren"


def test_nothing_is_loaded_from_another_host() -> None:
    # Site networks are often offline, and a CDN would learn who opens the dashboard.
    pattern = re.compile(
        r"""(?:src|href)\s*=\s*["'](?:https?:)?//|@import\s+url\(\s*["']?(?:https?:)?//|fetch\(\s*["']https?://"""
    )
    offenders = []
    for path in [
        *WEB.joinpath("templates").rglob("*.html"),
        *WEB.joinpath("static").rglob("*.css"),
        *WEB.joinpath("static", "js").rglob("*.js"),
    ]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert offenders == []


def test_every_static_reference_in_the_templates_exists() -> None:
    referenced = set()
    for path in WEB.joinpath("templates").rglob("*.html"):
        referenced |= set(
            re.findall(r"url_for\('web_static', path='([^']+)'\)", path.read_text(encoding="utf-8"))
        )
    assert referenced, "the templates name their static files through url_for"
    missing = sorted(r for r in referenced if not (WEB / "static" / r).is_file())
    assert missing == []
