"""deploy/ uses the operators' options where they make a deployment simpler (issue 22)."""

from __future__ import annotations

import configparser

import yaml

from support import ROOT

DEPLOY = ROOT / "deploy"


def test_the_container_example_drops_privileges():
    documents = yaml.safe_load_all((DEPLOY / "kubernetes" / "deployment.yaml").read_text())
    pod = next(d for d in documents if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0 and pod["securityContext"]["runAsGroup"] != 0
    container = pod["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    # Port 8000 needs no root: nothing in the container has to start as root.
    assert all(port["containerPort"] >= 1024 for port in pod["containers"][0]["ports"])


def test_the_systemd_unit_switches_users_and_needs_no_pid_file():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(DEPLOY / "systemd" / "corral.service")
    service = unit["Service"]
    assert service["User"] and service["User"] != "root"
    assert "$MAINPID" in service["ExecReload"]
    assert "--pid" not in service["ExecStart"]
