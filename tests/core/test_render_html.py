"""`render --as html` without a browser: the same plan gives the same bytes, the page names
no URL and loads no asset, plan text is escaped, and a plan without a serving estimate says
so. (tests/browser/ checks the page in Chromium.)"""

from __future__ import annotations

import copy
from html.parser import HTMLParser

import pytest
import yaml
from support.paths import EXAMPLES

from xinf_planner.core.planning import make_plan
from xinf_planner.core.render import TEMPLATES, render
from xinf_planner.core.request import merge_flags, request_from_intent
from xinf_planner.shell.documents import load_document, load_inventory
from xinf_planner.shell.templates import read_templates


def _html(doc) -> str:
    return render(doc, "html", read_templates(TEMPLATES["html"]))


@pytest.fixture(scope="module")
def plan():
    inv = load_inventory(EXAMPLES / "hosts" / "2x8xa100-cluster.yaml")
    return make_plan(
        inv, request_from_intent(merge_flags(None, {"model": "deepseek-r1-distill-qwen:7", "replicas": 3}))
    )


class _Refs(HTMLParser):
    """Every tag, and every attribute that can load something."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "poster", "data", "xlink:href") and value is not None:
                self.refs.append((tag, name, value))
            if name == "style" and value and "url(" in value:
                self.refs.append((tag, name, value))


def test_same_plan_same_bytes(plan):
    first = _html(plan)
    assert _html(copy.deepcopy(plan)) == first
    assert _html(yaml.safe_load(yaml.safe_dump(plan))) == first  # through a file and back


def test_self_contained(plan):
    page = _html(plan)
    refs = _Refs()
    refs.feed(page)
    assert all(value.startswith("#") for _, _, value in refs.refs), refs.refs  # in-page anchors only
    assert not {"link", "img", "iframe", "object", "embed", "base"} & set(refs.tags)
    assert "url(" not in page and "@import" not in page
    assert "http://" not in page and "https://" not in page


def test_every_plan_text_is_escaped(plan):
    doc = copy.deepcopy(plan)
    doc["deployments"][0]["reasons"].append('<script>alert(1)</script> & "quotes"')
    doc["rejected"].append({"candidate": "<b>bold</b>", "reason": "</td>"})
    page = _html(doc)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in page
    assert "<b>bold</b>" not in page and "&lt;/td&gt;" in page


def test_sections_and_no_serving_estimate(plan):
    page = _html(plan)
    for section in ("deployments", "map", "memory", "serving", "reasons", "rejected"):
        assert f'<section id="{section}">' in page
    assert page.count("no serving estimate in this plan") == 0  # every plan has its serving figures
    old = copy.deepcopy(plan)
    for dep in old["deployments"]:
        dep["estimate"].pop("serving")
    assert _html(old).count("no serving estimate in this plan") == 1  # a plan from before issue 11
    gpus = sum(len(p["gpus"]) for p in plan["deployments"][0]["placement"])
    assert len(plan["deployments"][0]["placement"]) == 3 and page.count('class="chip"') == gpus  # one per GPU


def test_the_sharded_example_plan(run_cli, tmp_path):
    path = EXAMPLES / "cluster" / "plan-r1-fp8.yaml"
    out = tmp_path / "plan.html"
    code, stdout, err = run_cli("render", path, "--as", "html", "-o", out)
    assert code == 0 and f"wrote {out}" in err, err
    page = out.read_text(encoding="utf-8")
    assert page == _html(load_document(path))
    assert page.count('class="chip"') == 16  # one replica, on 8 GPUs of each of two hosts
    code, stdout, err = run_cli("render", path, "--as", "html")  # or to stdout
    assert code == 0 and stdout == page


def test_an_invalid_plan_is_refused_in_one_line(run_cli, tmp_path):
    doc = load_document(EXAMPLES / "cluster" / "plan-r1-fp8.yaml")
    doc["deployments"][0]["launch"]["replica"] = 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    code, out, err = run_cli("render", bad, "--as", "html", "-o", tmp_path / "x.html")
    assert code == 1 and err.count("\n") == 1 and "$.deployments[0].launch.replica" in err
    assert not (tmp_path / "x.html").exists()


def test_links_without_a_matrix_are_the_planners_numa_assumption():
    inv = load_inventory(EXAMPLES / "hosts" / "6xt4.yaml").to_dict()
    for host in inv["hosts"]:
        host.pop("topology")
    from xinf_planner.core.inventory import Inventory

    doc = make_plan(Inventory.from_dict(inv), request_from_intent({"model": "deepseek-r1-distill-qwen:7"}))
    page = _html(doc)
    # GPUs 0-2 on NUMA node 0, 3-5 on node 1 (examples/hosts/6xt4.yaml): 3 + 3 pairs within, 9 across
    assert page.count('data-link="NODE (NUMA)"') == 6 and page.count('data-link="SYS (NUMA)"') == 9
    assert 'class="matrix"' not in page
