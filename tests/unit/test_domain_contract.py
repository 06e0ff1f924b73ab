"""Every domain against the contract of tasks/domains/__init__.py, as tests/models does for every registered model.

Parametrized over :func:`tasks.domains.names`, so a new domain package is checked without touching this file:
it satisfies the protocol of its kind with the hooks' signatures, its params sections validate (defaults and
params.yaml), its ingest and preprocess stages exist, and its synthetic source writes files its own ingest reads.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import yaml

from tasks import domains
from tasks.domains import ClassificationDomain, Domain, FieldDomain, TaskInfo
from tasks.params import load_params
from tasks.params_base import SECTIONS, DomainParams, Strict, TrainSection
from tests.conftest import REPO

NAMES = domains.names()


def test_every_domain_package_is_found():
    assert set(NAMES) >= {"netflow", "eeg", "finance", "turbulence"}
    assert all((REPO / "tasks" / "domains" / n / "domain.py").exists() for n in NAMES)


def test_an_unknown_domain_names_the_known_ones():
    with pytest.raises(domains.UnknownDomainError, match="known domains: " + ", ".join(NAMES)):
        domains.get("nowhere")


@pytest.mark.parametrize("name", NAMES)
def test_domain_satisfies_the_protocol_of_its_kind(name):
    dom = domains.get(name)
    assert dom.name == name and dom.kind in ("classification", "field")
    proto = ClassificationDomain if dom.kind == "classification" else FieldDomain
    assert isinstance(dom, Domain) and isinstance(dom, proto)
    assert not isinstance(dom, FieldDomain if proto is ClassificationDomain else ClassificationDomain)
    # Each hook takes the contract's parameters (names and order), so a renamed or missing argument fails here.
    for attr, member in inspect.getmembers(proto):
        if attr.startswith("_") or not inspect.isfunction(member):
            continue
        want = list(inspect.signature(member).parameters)[1:]
        got = list(inspect.signature(getattr(dom, attr)).parameters)
        assert got == want, f"{name}.{attr}{tuple(got)} does not match the contract's {tuple(want)}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("stage", ["ingest", "preprocess"])
def test_domain_stages_exist(name, stage):
    module = importlib.import_module(f"tasks.domains.{name}.{stage}")
    fn = getattr(module, stage)
    assert list(inspect.signature(fn).parameters)[:2] == ["params", "run"]


@pytest.mark.parametrize("name", NAMES)
def test_params_sections_validate(name):
    """Every section class builds from its defaults; params.yaml's sections validate; a typo is refused."""
    sections = domains.params_of(name)
    assert isinstance(sections, DomainParams)
    for section in SECTIONS:
        cls = sections.section(section)
        assert issubclass(cls, Strict) and cls() is not None
    assert issubclass(sections.train, TrainSection)
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    for section in SECTIONS:
        sections.section(section).model_validate(data[section][name])
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        sections.ingest.model_validate({**data["ingest"][name], "sourse": "x"})


@pytest.mark.parametrize("name", NAMES)
def test_task_info_is_a_task_info(name, project):
    """task_info answers from params and a schema alone (here the one preprocess writes for the tiny data)."""
    params = load_params()
    dom = domains.get(name)
    importlib.import_module(f"tasks.domains.{name}.ingest").ingest(params, None)
    importlib.import_module(f"tasks.domains.{name}.preprocess").preprocess(params, None)
    schema = dom.load_schema()
    info = dom.task_info(params, schema)
    assert isinstance(info, TaskInfo)
    assert info.task == params.section("train", name).task
    assert (info.task == "regression") == (dom.kind == "field")
    if dom.kind == "classification":
        assert len(info.class_names) >= 2 and info.positive and info.negative and info.item
    split = dom.load_split("test", info.task)
    assert len(split) == len(split.labels) > 0
    assert isinstance(dom.model_config(params, schema), dict)
    raw = Path(project) / "data" / "raw" / name
    assert (raw / "manifest.json").exists()  # the synthetic source's files were read back by the domain's ingest
