"""prefect.yaml mirrors flows/deployments.py: same deployments, entrypoints, crons and schedule slugs."""

from __future__ import annotations

import yaml

from tests.conftest import REPO


def test_prefect_yaml_mirrors_deployments():
    from flows.deployments import DEPLOYMENTS, deployments

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in spec["deployments"]}
    assert set(by_name) == {name for name, *_ in DEPLOYMENTS}
    entry = {"formerflow-domain": "flows/pipeline.py:domain_flow", "formerflow-pipeline": "flows/pipeline.py:pipeline"}
    for name, flow_name, parameters, cron, slug in DEPLOYMENTS:
        d = by_name[name]
        assert d["entrypoint"] == entry[flow_name]
        assert d["parameters"] == parameters
        assert [(s["cron"], s["slug"]) for s in d["schedules"]] == [(cron, slug)]
    built = deployments()
    assert [d.name for d in built] == [name for name, *_ in DEPLOYMENTS]
    for d, (_, _, _, cron, slug) in zip(built, DEPLOYMENTS, strict=True):
        assert d.schedules[0].schedule.cron == cron
        assert d.schedules[0].slug == slug


def test_every_domain_has_a_deployment():
    from flows.deployments import DEPLOYMENTS
    from tasks.params import DOMAINS

    domains = {p.get("domain") for _, _, p, *_ in DEPLOYMENTS}
    assert set(DOMAINS) <= domains
