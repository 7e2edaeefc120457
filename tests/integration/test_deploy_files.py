"""The deployment files, checked by the tools that know them: promtool (alert rules and their
unit tests, the scrape configuration), dockerfilelint (Dockerfile), dclint (docker-compose.yml),
plus what this project requires of them. Not run here: `docker build` and `docker compose
config`/`up` (no Docker daemon or compose plugin on the test machines; README, "Deployment")."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.linters import npm_linter
from tests.support.tools import ensure_tool

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    return ensure_tool("promtool", "prometheus")


def run(*command: str | Path, cwd: Path = ROOT) -> str:
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_alert_rules_are_valid_and_their_unit_tests_pass(promtool: str) -> None:
    assert "SUCCESS: 8 rules found" in run(promtool, "check", "rules", PROMETHEUS / "alerts.yml")
    assert "SUCCESS" in run(promtool, "test", "rules", PROMETHEUS / "alerts_test.yml")


def test_every_alert_has_a_unit_test_and_uses_families_the_app_exports(promtool: str) -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
    tested = (PROMETHEUS / "alerts_test.yml").read_text()
    exported = (ROOT / "docs" / "operations.md").read_text()
    for rule in rules:
        assert f"alertname: {rule['alert']}" in tested or rule["labels"]["severity"] == "info", rule["alert"]
        for family in re.findall(r"\bnotebook_[a-z_]+", rule["expr"]):
            base = re.sub(r"_(bucket|count|sum)$", "", family)
            assert f"`{base}" in exported, (
                f"{rule['alert']} uses {family}, which docs/operations.md does not list"
            )


def test_the_scrape_configuration_is_valid(promtool: str, tmp_path: Path) -> None:
    token = tmp_path / "notebook_metrics_token"
    token.write_text("a-metrics-token-of-the-test\n")
    config = (
        (PROMETHEUS / "prometheus.yml")
        .read_text()
        .replace("/etc/prometheus/notebook_metrics_token", str(token))
    )
    (tmp_path / "prometheus.yml").write_text(config)
    (tmp_path / "alerts.yml").write_text((PROMETHEUS / "alerts.yml").read_text())
    assert "SUCCESS" in run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck_and_lints_clean() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+", text, flags=re.MULTILINE)
    assert len(stages) >= 2, "multi-stage"
    final = text.rsplit("\nFROM ", 1)[1]
    users = re.findall(r"^USER\s+(\S+)", final, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), "the final stage runs as a non-root user"
    assert re.search(r"^HEALTHCHECK\s+.*CMD", final, flags=re.MULTILINE | re.DOTALL)
    assert final.index("USER") < final.index("CMD [")
    output = run(npm_linter("dockerfilelint"), "Dockerfile")
    assert "Issues: None found" in output, output


def test_compose_file_has_three_couchdb_nodes_two_apps_and_haproxy_and_lints_clean() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    couches = [name for name, s in services.items() if str(s.get("image", "")).startswith("couchdb:3")]
    apps = [name for name, s in services.items() if s.get("build") == "."]
    assert len(couches) == 3 and len(apps) == 2, services.keys()
    haproxy = services["haproxy"]
    assert "./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in haproxy["volumes"]
    cfg = (ROOT / "deploy" / "haproxy.cfg").read_text()
    for variable in haproxy["environment"]:
        assert "${" + variable in cfg, f"haproxy.cfg does not read {variable}"
    for app in apps:
        env = services[app]["environment"]
        # TLS to the nodes, verified against the cluster's CA; no plain-HTTP opt-in
        assert env["COUCHDB_URL"] == "https://couch1:6984/"
        assert set(env["REPLICATION_NODES"].split(",")) == {"https://couch2:6984/", "https://couch3:6984/"}
        assert env["COUCHDB_CA_FILE"] == "/run/notebook-tls/ca.pem" and "COUCHDB_ALLOW_PLAIN_HTTP" not in env
        assert "./deploy/tls/ca.pem:/run/notebook-tls/ca.pem:ro" in services[app]["volumes"]
        assert "SECRET_KEY" in env and "?" in env["SECRET_KEY"], "no default secret"
    tls_ini = (ROOT / "deploy" / "couchdb" / "tls.ini").read_text()
    assert "port = 6984" in tls_ini and "verify_ssl_certificates = true" in tls_ini
    for couch in couches:
        assert "./deploy/couchdb/tls.ini:/opt/couchdb/etc/local.d/20-tls.ini:ro" in services[couch]["volumes"]
    assert "./deploy/tls:/usr/local/etc/haproxy/certs:ro" in haproxy["volumes"]
    run(npm_linter("dclint"), "--max-warnings", "0", "docker-compose.yml")
