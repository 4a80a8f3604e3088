"""`render --as html` in a real browser: Debian's headless Chromium loads the page, and the
DOM is checked against the plan: every GPU and every replica is there, the memory bars are
drawn to the plan's own figures (element geometry against ``per_gpu_gib``), the links are
the inventory's topology, the curve is the serving estimate's, the rejected table sorts, the
page asks for nothing but itself, and plan text cannot inject markup.

Screenshots are kept under ``tests/artifacts/`` (ignored by git; ``$XINF_PLAN_ARTIFACTS``
overrides it); each test prints where. The README's picture is the 4×4090 one.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
from support.chromium import Browser, find_chromium
from support.paths import EXAMPLES, ROOT

from xinf_planner.core.planning import make_plan
from xinf_planner.core.render import TEMPLATES, render
from xinf_planner.core.request import merge_flags, request_from_intent
from xinf_planner.shell.documents import load_document, load_inventory
from xinf_planner.shell.templates import read_templates

pytestmark = pytest.mark.browser

if not find_chromium():
    if os.environ.get("XINF_PLAN_REQUIRE_CHROMIUM"):
        raise RuntimeError("chromium is required ($XINF_PLAN_REQUIRE_CHROMIUM) but not installed")
    pytest.skip("chromium is not installed (apt-get install -y chromium)", allow_module_level=True)

ARTIFACTS = Path(os.environ.get("XINF_PLAN_ARTIFACTS") or ROOT / "tests" / "artifacts")
GIB = 1024**3
PX_TOLERANCE = 0.05  # layout rounds widths to 1/64 px


def _plan(hosts: str, **flags) -> dict:
    return make_plan(load_inventory(EXAMPLES / "hosts" / hosts), request_from_intent(merge_flags(None, flags)))


def _mixed_models() -> dict:
    return dict(
        models=[
            {"model": "deepseek-r1-distill-qwen:14", "share": 0.67, "concurrency": 4},
            {"model": "deepseek-r1-distill-qwen:1.5", "share": 0.33, "concurrency": 4},
        ],
        context_length=16384,
    )


PLANS = {
    # two deployments on 4 PCIe GPUs: TP groups on one switch (PIX), NODE between them
    "4x4090": lambda: _plan("4x4090-pcie.yaml", **_mixed_models()),
    # GPUs of three sizes in one host: bars to one scale
    "mixed": lambda: _plan("mixed-4090-3090-t4.yaml", **_mixed_models()),
    # two hosts, replicas spread by replica_config, with the serving model's figures
    "cluster": lambda: _plan("2x8xa100-cluster.yaml", model="deepseek-r1-distill-qwen:7", replicas=3, concurrency=8),
    # CPU replicas: host RAM bars
    "cpu": lambda: _plan("cpu-only-16c-64g.yaml", model="deepseek-r1-distill-qwen:1.5", replicas=2),
    # R1 sharded over two hosts (n_worker 2): one replica on 16 GPUs
    "sharded": lambda: load_document(EXAMPLES / "cluster" / "plan-r1-fp8.yaml"),
}


@pytest.fixture(scope="module")
def browser():
    with Browser(width=1280, height=900) as b:
        yield b


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """Each plan and its page, written to a file."""
    folder = tmp_path_factory.mktemp("pages")
    templates = read_templates(TEMPLATES["html"])
    out = {}
    for name, make in PLANS.items():
        doc = make()
        path = folder / f"{name}.html"
        path.write_text(render(doc, "html", templates), encoding="utf-8")
        out[name] = (doc, path)
    return out


def _keep(page, name: str, capsys, full_page: bool = True) -> Path:
    path = page.screenshot(ARTIFACTS / f"plan-review-{name}.png", full_page=full_page)
    with capsys.disabled():
        print(f"\n  screenshot: {path}")
    assert path.stat().st_size > 10_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def _expected_replicas(doc: dict) -> set[tuple]:
    """(deployment, replica, host, gpu or 'cpu') for every replica on every device it uses."""
    out = set()
    for dep in doc["deployments"]:
        for r, place in enumerate(dep["placement"]):
            for host in place.get("hosts") or [place["host"]]:
                for gpu in place["gpus"] or ["cpu"]:
                    out.add((dep["name"], r, host, gpu))
    return out


DOM_REPLICAS = """
Array.from(document.querySelectorAll('#map .chip')).map(function (c) {
  var gpu = c.closest('.gpu'), host = c.closest('.host');
  return [c.dataset.deployment, parseInt(c.dataset.replica), host.dataset.host,
          gpu ? parseInt(gpu.dataset.gpu) : 'cpu'];
})
"""

DOM_BARS = """
(function () {
  var out = {};
  document.querySelectorAll('#gpu-bars .bar-row, #ram-bars .bar-row').forEach(function (row) {
    var scale = parseFloat(row.closest('.bars').dataset.pxPerGib);
    var key = row.dataset.host + ':' + (row.dataset.gpu === undefined ? 'ram' : row.dataset.gpu);
    out[key] = {
      scale: scale,
      bar: row.querySelector('.bar').getBoundingClientRect().width,
      border: parseFloat(getComputedStyle(row.querySelector('.bar')).borderLeftWidth) * 2,
      segs: Array.from(row.querySelectorAll('.seg')).map(function (s) {
        return [s.dataset.part, s.dataset.deployment || null, s.getBoundingClientRect().width];
      })
    };
  });
  return out;
})()
"""


@pytest.mark.parametrize("name", list(PLANS))
def test_every_gpu_and_replica_is_on_the_page(browser, pages, capsys, name):
    doc, path = pages[name]
    page = browser.open(path)
    assert page.requests == [page.url]  # nothing but the file itself: no network, no assets
    hosts = doc["inventory"]["document"]["hosts"]
    want = sorted((h["name"], g["index"]) for h in hosts for g in h["gpus"])
    got = page.evaluate(
        "Array.from(document.querySelectorAll('#map .gpu')).map(g => [g.dataset.host, parseInt(g.dataset.gpu)])"
    )
    assert sorted(map(tuple, got)) == want
    bars = page.evaluate("Array.from(document.querySelectorAll('#gpu-bars .bar-row')).length")
    assert bars == len(want)
    assert set(map(tuple, page.evaluate(DOM_REPLICAS))) == _expected_replicas(doc)
    assert page.evaluate("document.title").startswith("xinf-plan review: ")
    _keep(page, name, capsys)


@pytest.mark.parametrize("name", list(PLANS))
def test_memory_bars_are_drawn_to_the_plans_figures(browser, pages, name):
    doc, path = pages[name]
    page = browser.open(path)
    rows = page.evaluate(DOM_BARS)
    hosts = {h["name"]: h for h in doc["inventory"]["document"]["hosts"]}
    scales = set()
    for dep in doc["deployments"]:
        per = dep["estimate"]["per_gpu_gib"]
        for place in dep["placement"]:
            for host in place.get("hosts") or [place["host"]]:
                if not place["gpus"]:
                    continue
                for gpu in place["gpus"]:
                    row = rows[f"{host}:{gpu}"]
                    scale = row["scale"]
                    scales.add(scale)
                    mine = [(part, w) for part, d, w in row["segs"] if d == dep["name"]]
                    assert [p for p, _ in mine] == ["weights", "kv_cache", "activation", "overhead"]
                    for part, width in mine:  # each part of the plan's estimate, to scale
                        assert width == pytest.approx(per[part] * scale, abs=PX_TOLERANCE), (host, gpu, part)
                    info = next(g for g in hosts[host]["gpus"] if g["index"] == gpu)
                    total = info["memory_total_bytes"] / GIB
                    used = info.get("memory_used_bytes", 0) / GIB
                    free = [w for part, _, w in row["segs"] if part == "free"][0]
                    assert free == pytest.approx((total - used - per["total"]) * scale, abs=PX_TOLERANCE)
                    assert row["bar"] - row["border"] == pytest.approx(total * scale, abs=PX_TOLERANCE)
    assert len(scales) <= 1  # one scale for every GPU bar on the page
    for host in hosts.values():  # GPUs of different sizes: widths in proportion to their memory
        for gpu in host["gpus"]:
            row = rows[f"{host['name']}:{gpu['index']}"]
            assert row["bar"] - row["border"] == pytest.approx(
                gpu["memory_total_bytes"] / GIB * row["scale"], abs=PX_TOLERANCE
            )
    cpu = [d for d in doc["deployments"] if not d["placement"][0]["gpus"]]
    for dep in cpu:
        host = dep["placement"][0]["host"]
        row = rows[f"{host}:ram"]
        held = sum(w for _, d, w in row["segs"] if d == dep["name"])
        assert held == pytest.approx(dep["estimate"]["host_gib"] * len(dep["placement"]) * row["scale"], abs=0.2)


def test_the_mixed_host_draws_a_t4_shorter_than_a_4090(browser, pages):
    page = browser.open(pages["mixed"][1])
    rows = page.evaluate(DOM_BARS)
    t4, rtx = rows["ws-mixed:2"]["bar"], rows["ws-mixed:0"]["bar"]
    assert t4 / rtx == pytest.approx(16106127360 / 25757220864, rel=0.01)


def test_links_are_the_inventorys_topology(browser, pages):
    doc, path = pages["4x4090"]
    page = browser.open(path)
    host = doc["inventory"]["document"]["hosts"][0]
    lines = page.evaluate(
        "Array.from(document.querySelectorAll('#map svg.links line.link')).map("
        "l => [parseInt(l.dataset.a), parseInt(l.dataset.b), l.dataset.link, l.getAttribute('class')])"
    )
    idx = [g["index"] for g in host["gpus"]]
    want = {(idx[a], idx[b], host["topology"][a][b]) for a in range(len(idx)) for b in range(a + 1, len(idx))}
    assert {(a, b, link) for a, b, link, _ in lines} == want
    kinds = {link: cls.split()[-1] for _, _, link, cls in lines}
    assert kinds == {"PIX": "link-pix", "NODE": "link-node"}
    matrix = page.evaluate(
        "Array.from(document.querySelectorAll('#map table.matrix tr')).slice(1).map("
        "r => Array.from(r.cells).slice(1).map(c => c.textContent))"
    )
    assert matrix == host["topology"]


def test_the_serving_curve_is_the_plans_and_absent_estimates_say_so(browser, pages, capsys):
    doc, path = pages["cluster"]
    page = browser.open(path)
    block = doc["deployments"][0]["estimate"]["serving"]
    for series, key in (("TTFT", "ttft_s"), ("TPOT", "tpot_s")):
        pts = page.evaluate(
            f"Array.from(document.querySelectorAll('svg.curve[data-series={series}] circle.pt')).map("
            "c => [parseFloat(c.dataset.concurrency), parseFloat(c.dataset.value), parseFloat(c.getAttribute('cy'))])"
        )
        assert [(c, v) for c, v, _ in pts] == [
            (p["concurrency"], pytest.approx(p[key] * 1000, abs=0.001)) for p in block["curve"]
        ]
        ys = [y for _, _, y in pts]
        assert ys == sorted(ys, reverse=True)  # rising latency is drawn rising (SVG y grows downwards)
    text = page.evaluate("document.querySelector('#serving').innerText")
    t = block["targets"]
    assert block["meets_targets"] and "meets its targets" in text
    assert f"TTFT ≤ {t['max_ttft_ms']} ms, TPOT ≤ {t['max_tpot_ms']} ms" in text
    assert f"{block['ttft_s'] * 1000:.0f} ms" in text and str(block["max_concurrency_within_targets"]) in text
    _keep(page, "cluster-top", capsys, full_page=False)
    for name in ("4x4090", "cpu", "sharded"):  # every plan has its serving figures now
        page = browser.open(pages[name][1])
        notes = page.evaluate("Array.from(document.querySelectorAll('#serving .no-serving')).map(e => e.textContent)")
        assert notes == [] and all("serving" in d["estimate"] for d in pages[name][0]["deployments"])


def test_the_rejected_alternatives_sort_by_any_column(browser, pages):
    doc, path = pages["4x4090"]
    page = browser.open(path)
    rows = "Array.from(document.querySelectorAll('#rejected-table tbody tr')).map(r => r.cells[COL].textContent)"
    reasons = [r["reason"] for r in doc["rejected"]]
    assert page.evaluate(rows.replace("COL", "2")) == reasons  # the plan's order first
    page.evaluate("document.querySelectorAll('#rejected-table th')[2].click()")
    got = page.evaluate(rows.replace("COL", "2"))
    assert got == sorted(reasons, key=str.lower) or [g.lower() for g in got] == sorted(r.lower() for r in reasons)
    page.evaluate("document.querySelectorAll('#rejected-table th')[2].click()")
    assert [g.lower() for g in page.evaluate(rows.replace("COL", "2"))] == sorted(
        (r.lower() for r in reasons), reverse=True
    )
    page.evaluate("document.querySelectorAll('#rejected-table th')[0].click()")
    page.evaluate("document.querySelectorAll('#rejected-table th')[0].click()")  # descending by number
    assert page.evaluate(rows.replace("COL", "0")) == [str(n) for n in range(len(reasons), 0, -1)]


def test_plan_text_cannot_inject_markup(browser, pages, tmp_path):
    doc = copy.deepcopy(pages["cpu"][0])
    evil = '<img src=x onerror="document.title=\'owned\'"><script>document.title="owned"</script>'
    doc["deployments"][0]["reasons"].append(evil)
    doc["rejected"].append({"candidate": "</td></tr></table><b id=x>", "reason": evil})
    doc["notes"] = [evil]
    path = tmp_path / "evil.html"
    path.write_text(render(doc, "html", read_templates(TEMPLATES["html"])), encoding="utf-8")
    page = browser.open(path)
    assert page.evaluate("document.title").startswith("xinf-plan review")
    assert page.evaluate("document.querySelectorAll('img, #x').length") == 0
    assert page.evaluate("document.querySelectorAll('script').length") == 1  # the page's own
    assert evil in page.evaluate("document.querySelector('#reasons').innerText")
    assert page.requests == [page.url]


def test_the_readme_picture(browser, pages, capsys):
    """The top of the 4×4090 page, as docs/img/plan-review.png shows it (copied from here)."""
    with Browser(width=1280, height=1500) as tall:
        page = tall.open(pages["4x4090"][1])
        path = _keep(page, "4x4090-top", capsys, full_page=False)
    assert path.exists()
