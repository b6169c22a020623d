"""The deployment files: docker-compose accepts the compose file, and it carries what the rig needs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory):
    """`docker-compose config` (Debian's docker-compose) on a copy of the deployment files."""
    exe = require("docker-compose", "Debian's docker-compose")
    work = tmp_path_factory.mktemp("compose")
    for name in ("docker-compose.yml", "Dockerfile", "requirements.txt"):
        shutil.copy(os.path.join(ROOT, name), work / name)
    shutil.copytree(os.path.join(ROOT, "worker"), work / "worker")
    shutil.copy(os.path.join(ROOT, ".env.example"), work / ".env")
    env = {"PATH": os.environ["PATH"], "PWD": str(work)}
    out = subprocess.run([exe, "config"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # docker-compose runs on Debian's python3 with PyYAML: let that turn its YAML into JSON.
    to_json = "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"
    parsed = subprocess.run(["/usr/bin/python3", "-c", to_json], input=out.stdout, capture_output=True, text=True, timeout=30)
    assert parsed.returncode == 0, parsed.stderr
    return work, json.loads(parsed.stdout)


def test_compose_file_is_accepted_and_complete(compose_config):
    work, cfg = compose_config
    manager = cfg["services"]["manager"]
    assert manager["privileged"] is True
    assert manager["network_mode"] == "host"
    assert manager["restart"] == "unless-stopped"
    mounts = {v["target"]: v for v in manager["volumes"]} if isinstance(manager["volumes"][0], dict) else None
    targets = mounts.keys() if mounts else [v.split(":")[1] for v in manager["volumes"]]
    for target in ("/var/run/docker.sock", "/app/json", "/app/links.txt", "/sys/class/hwmon", "/run/smartminer"):
        assert target in targets, target
    assert manager["environment"]["HOST_JSON_PATH"] == f"{work}/json"
    assert manager["environment"]["PIPE_PATH"] == "/run/smartminer/miner_comm"
    assert manager["logging"]["options"]["max-size"]
    assert manager["init"] is True  # an init reaps Chromium's orphans (issue 13)
    assert 0 < float(manager["cpus"]) <= 0.2  # mining comes first: the manager's quota
    worker = cfg["services"]["worker"]
    assert worker["image"] == "smartminer_worker_img:latest"
    assert worker["build"]["context"].endswith("worker")


def test_manager_image_uses_debian_chromium_and_a_healthcheck():
    text = open(os.path.join(ROOT, "Dockerfile"), encoding="utf-8").read()
    assert "chromium chromium-driver" in text
    assert "HEALTHCHECK" in text and '"healthcheck.py"' in text
    assert "COPY web/ ./web/" in text  # the dashboard's page and its vendored chart library
    assert "CHROMEDRIVER_PATH=/usr/bin/chromedriver" in text
    assert 'ENTRYPOINT ["/usr/bin/tini", "-s", "--"]' in text  # PID 1 reaps, under `docker run` and Swarm too
    for download in ("wget", "curl", "webdriver-manager", "chromedriver.storage"):
        assert download not in text


def test_worker_image_runs_xmrig():
    text = open(os.path.join(ROOT, "worker", "Dockerfile"), encoding="utf-8").read()
    assert 'ENTRYPOINT ["xmrig"]' in text


def test_xmrig_config_serves_its_api_on_loopback_3000():
    import json

    cfg = json.load(open(os.path.join(ROOT, "json", "config.json"), encoding="utf-8"))
    assert cfg["http"] == {**cfg["http"], "enabled": True, "host": "127.0.0.1", "port": 3000}
    assert "pools" not in cfg  # the manager passes the pool on the command line


def test_env_example_names_only_real_settings():
    import config

    names = {f.name for f in __import__("dataclasses").fields(config.Settings)}
    for line in open(os.path.join(ROOT, ".env.example"), encoding="utf-8"):
        line = line.strip().lstrip("# ")
        if "=" in line and line.split("=", 1)[0].isupper():
            assert line.split("=", 1)[0] in names, line
