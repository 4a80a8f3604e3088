"""A plan as one self-contained HTML page for review: what runs where, on which links, with
how much memory, how fast, and why.

Pure: the plan document and the page template's text in (``TEMPLATE``, read by
``shell/templates.read_templates``), the page out. The page needs nothing else: its CSS, its
SVG drawings and its few lines of JavaScript (sorting the rejected alternatives) are inline, it
names no URL, and the same plan always gives the same bytes (no clock, no random ids, every
number formatted with fixed decimals, everything in the plan's own order).

Every text taken from the plan is HTML-escaped: a plan can be edited by hand, and the page is
for someone else to open.

Sections, each an element with an ``id`` the browser tests look up:

- ``#deployments``: one row per deployment (engine, quantisation, GPUs, replicas, speed).
- ``#map``: every host with its GPUs; each GPU names the replica on it; an SVG draws the link
  between every pair of GPUs (the inventory's ``nvidia-smi topo -m`` matrix: NVLink, one PCIe
  switch, several, one NUMA node, SYS), and the matrix itself follows.
- ``#memory``: per GPU, a bar of weights, KV cache, activation, overhead (per replica on it),
  memory in use before the plan, and what is left free, drawn to one scale for the whole page
  (``data-px-per-gib``); CPU replicas get the same bars for their host's RAM, on a scale of
  their own.
- ``#serving``: each deployment's figures and targets, and its TTFT/TPOT curve against
  concurrency when the plan has a serving estimate (``estimate.serving``); else it says
  "no serving estimate in this plan".
- ``#reasons``: the reasons of every deployment and the plan's notes; lines where the plan is
  not as asked are marked.
- ``#rejected``: the rejected alternatives, a table sortable by any column.
"""

from __future__ import annotations

import html
import math

from xinf_planner.core.plan.document import Deployment, Plan
from xinf_planner.core.units import GIB

TEMPLATE = "render/plan.html.tmpl"
BAR_PX = 640.0  # the widest GPU's bar
RAM_BAR_PX = 640.0  # the largest host's RAM bar
PARTS = (("weights", "weights"), ("kv_cache", "KV cache"), ("activation", "activation"), ("overhead", "overhead"))
RAM_PARTS = (("host_weights", "weights"), ("host_kv_cache", "KV cache"))
# deployment colours, in plan order (then again)
PALETTE = ("#3b6fd6", "#d6453b", "#2f9e5b", "#9b4fd1", "#d18a1f", "#1f9fb4", "#c2418f", "#6d7a1f")
# link classes of nvidia-smi topo -m: (css class, words, stroke colour, dash)
LINKS = {
    "nv": ("NVLink", "#2f9e5b", "", 3),
    "pix": ("one PCIe switch (PIX)", "#3b6fd6", "", 2),
    "pxb": ("PCIe switches (PXB)", "#3b6fd6", "8 4", 2),
    "node": ("one NUMA node (PHB/NODE)", "#d18a1f", "5 3", 2),
    "sys": ("the CPU interconnect (SYS)", "#d6453b", "1 4", 1.5),
    "unknown": ("unknown", "#999999", "1 6", 1),
}
NOT_AS = ("Not as asked", "Not as before")
MAX_DRAWN_GPUS = 16  # hosts with more GPUs get the matrix only


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def num(x: float, digits: int = 2) -> str:
    """A figure with fixed decimals (and never '-0.00')."""
    text = f"{float(x):.{digits}f}"
    return text.lstrip("-") if float(text) == 0 else text


def link_class(link: str | None) -> str:
    if not link:
        return "unknown"
    if link.startswith("NV"):
        return "nv"
    return {"PIX": "pix", "PXB": "pxb", "PHB": "node", "NODE": "node", "SYS": "sys"}.get(link.split()[0], "unknown")


def render_html(doc: dict, templates: dict[str, str]) -> str:
    """The review page of ``doc`` (a validated plan), filling ``templates[TEMPLATE]``."""
    from xinf_planner.core.render import fill

    page = _Page(doc)
    return fill(
        templates,
        TEMPLATE,
        {
            "title": esc(page.title()),
            "header": page.header(),
            "deployments": page.deployments(),
            "map": page.map(),
            "memory": page.memory(),
            "serving": page.serving(),
            "reasons": page.reasons(),
            "rejected": page.rejected(),
        },
    )


class _Page:
    def __init__(self, doc: dict):
        self.doc = doc
        self.plan = Plan(doc)
        self.hosts = list(self.plan.hosts.values())
        # (host, gpu index) -> [(deployment index, replica index)]; host -> CPU replicas
        self.on_gpu: dict[tuple[str, int], list[tuple[int, int]]] = {}
        self.on_cpu: dict[str, list[tuple[int, int]]] = {}
        for d, dep in enumerate(self.plan):
            for r, place in enumerate(dep.placement):
                hosts = place.get("hosts") or [place.get("host")]
                gpus = place.get("gpus") or []
                for h in hosts:
                    if gpus:
                        for g in gpus:
                            self.on_gpu.setdefault((h, g), []).append((d, r))
                    else:
                        self.on_cpu.setdefault(h, []).append((d, r))

    # -- small pieces -------------------------------------------------------------------------
    def dep(self, d: int) -> Deployment:
        return self.plan.deployments[d]

    def color(self, d: int) -> str:
        return PALETTE[d % len(PALETTE)]

    def chip(self, d: int, r: int) -> str:
        dep = self.dep(d)
        return (
            f'<span class="chip" style="--c:{self.color(d)}" data-deployment="{esc(dep.name)}" '
            f'data-replica="{r}" title="{esc(dep.name)} replica {r}"><b>rep {r}</b> {esc(dep.name)}</span>'
        )

    def title(self) -> str:
        names = ", ".join(self.plan.names) or "no deployment"
        return f"xinf-plan review: {names}"

    # -- header and deployments ---------------------------------------------------------------
    def header(self) -> str:
        inv = self.doc.get("inventory") or {}
        req = self.doc.get("request") or {}
        rows = [
            ("generated by", self.doc.get("generated_by", "?")),
            ("inventory", f"{inv.get('fingerprint', '?')}" + (f" ({inv['source']})" if inv.get("source") else "")),
            ("hosts", f"{len(self.hosts)} host(s), {sum(len(h.get('gpus') or []) for h in self.hosts)} GPU(s)"),
        ]
        for m in req.get("models") or []:
            asked = [f"context {m.get('context_length')}", f"concurrency {m.get('concurrency')}"]
            for key in (
                "replicas",
                "share",
                "model_path",
                "input_tokens",
                "output_tokens",
                "max_ttft_ms",
                "max_tpot_ms",
            ):
                if key in m and not (key == "share" and m[key] == 1.0):
                    asked.append(f"{key.replace('_', ' ')} {m[key]}")
            rows.append(("asked", f"{m.get('model')}: " + ", ".join(asked)))
        opts = [f"objective {req.get('objective', 'balanced')}", f"strategy {req.get('strategy', 'spread')}"]
        for key in ("engines", "formats", "quantizations", "exclude_gpus"):
            if req.get(key):
                opts.append(f"{key} {', '.join(map(str, req[key]))}")
        if req.get("model_path_on_every_worker"):
            opts.append("model path on every worker")
        rows.append(("options", "; ".join(opts)))
        cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
        return f'<table class="facts">{cells}</table>'

    def deployments(self) -> str:
        head = (
            "<tr><th>deployment</th><th>model</th><th>engine</th><th>format/quant</th><th>GPUs/replica</th>"
            "<th>replicas</th><th>context</th><th>sequences</th><th>tok/s/seq</th><th>tok/s</th></tr>"
        )
        rows = []
        for d, dep in enumerate(self.plan):
            launch, est = dep.launch, dep.estimate
            width = len((dep.placement or [{}])[0].get("gpus") or [])
            tps = est.get("decode_tokens_per_s") or {}
            rows.append(
                f'<tr data-deployment="{esc(dep.name)}"><td><span class="swatch" style="--c:{self.color(d)}"></span>'
                f"{esc(dep.name)}</td><td>{esc(dep.doc.get('model', ''))}</td>"
                f"<td>{esc(launch.get('model_engine'))}</td>"
                f"<td>{esc(launch.get('model_format'))}/{esc(launch.get('quantization'))}</td>"
                f"<td>{width or 'CPU'}{' × ' + str(dep.n_worker) + ' hosts' if dep.sharded else ''}</td>"
                f"<td>{dep.replicas}</td><td>{esc(launch.get('context_length', '?'))}</td>"
                f"<td>{esc(est.get('served_sequences', '?'))}</td>"
                f"<td>{num(tps.get('per_sequence') or 0, 1)}</td><td>{num(tps.get('aggregate') or 0, 0)}</td></tr>"
            )
        return f"<table>{head}{''.join(rows)}</table>"

    # -- the map ------------------------------------------------------------------------------
    def map(self) -> str:
        out = [self._link_legend()]
        for host in self.hosts:
            out.append(self._host_card(host))
        return "".join(out)

    def _link_legend(self) -> str:
        items = []
        for words, color, dash, stroke in LINKS.values():
            line = (
                f'<line x1="2" y1="7" x2="30" y2="7" stroke="{color}" stroke-width="{stroke}" '
                f'stroke-dasharray="{dash}"/>'
            )
            items.append(f'<span class="legend-item"><svg width="32" height="14">{line}</svg>{esc(words)}</span>')
        return f'<div class="legend">{"".join(items)}</div>'

    def _host_card(self, host: dict) -> str:
        name = host.get("name", "?")
        gpus = host.get("gpus") or []
        facts = [f"{host.get('os', '?')}/{host.get('arch', '?')}", f"{host.get('cpu_cores', '?')} cores"]
        if host.get("memory_total_bytes"):
            facts.append(f"{num(host['memory_total_bytes'] / GIB, 0)} GiB RAM")
        if host.get("worker_address"):
            facts.append(f"worker {host['worker_address']}")
        tiles = []
        for g in gpus:
            holders = self.on_gpu.get((name, g["index"]), [])
            chips = "".join(self.chip(d, r) for d, r in holders) or '<span class="idle">free</span>'
            tiles.append(
                f'<div class="gpu" data-host="{esc(name)}" data-gpu="{g["index"]}">'
                f'<div class="gpu-head">GPU {g["index"]}</div>'
                f'<div class="gpu-name" title="{esc(g.get("name", "?"))}">{esc(g.get("name", "?"))}, '
                f"{num(g['memory_total_bytes'] / GIB, 1)} GiB</div>"
                f"{chips}</div>"
            )
        cpu = self.on_cpu.get(name, [])
        cpu_html = ""
        if cpu:
            cpu_html = (
                f'<div class="cpu-reps" data-host="{esc(name)}">CPU: {"".join(self.chip(d, r) for d, r in cpu)}</div>'
            )
        drawing = self._links_svg(host) if 1 < len(gpus) <= MAX_DRAWN_GPUS else ""
        matrix = self._matrix(host) if host.get("topology") else ""
        return (
            f'<section class="host" data-host="{esc(name)}"><h3>{esc(name)}</h3>'
            f'<div class="host-facts">{esc(", ".join(facts))}</div>'
            f'<div class="gpus">{"".join(tiles) or "<em>no GPU</em>"}</div>{cpu_html}'
            f'<div class="topo">{drawing}{matrix}</div></section>'
        )

    def _links_svg(self, host: dict) -> str:
        """GPUs on a circle, a line for every pair, styled by the link between them."""
        gpus = host.get("gpus") or []
        n = len(gpus)
        size, radius, box = 340.0, 110.0, 22.0
        out = (radius + 44.0) / radius  # where a node's replica labels go: outside the circle
        cx = cy = size / 2
        pos = []
        for k in range(n):
            angle = -math.pi / 2 + 2 * math.pi * k / n
            pos.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        lines = []
        for a in range(n):
            for b in range(a + 1, n):
                link = _link(host, a, b)
                cls = link_class(link)
                _, color, dash, stroke = LINKS[cls]
                (x1, y1), (x2, y2) = pos[a], pos[b]
                lines.append(
                    f'<line class="link link-{cls}" data-a="{gpus[a]["index"]}" data-b="{gpus[b]["index"]}" '
                    f'data-link="{esc(link or "?")}" x1="{num(x1)}" y1="{num(y1)}" x2="{num(x2)}" y2="{num(y2)}" '
                    f'stroke="{color}" stroke-width="{stroke}" stroke-dasharray="{dash}">'
                    f"<title>GPU {gpus[a]['index']} – GPU {gpus[b]['index']}: {esc(link or 'unknown')}</title></line>"
                )
        nodes = []
        for k, g in enumerate(gpus):
            x, y = pos[k]
            holders = self.on_gpu.get((host.get("name"), g["index"]), [])
            fill = self.color(holders[0][0]) if holders else "#ffffff"
            text = "#ffffff" if holders else "#222222"
            label = ", ".join(f"{self.dep(d).name} rep {r}" for d, r in holders) or "free"
            nodes.append(
                f'<g class="node" data-gpu="{g["index"]}"><rect x="{num(x - box)}" y="{num(y - box / 1.6)}" '
                f'width="{num(2 * box)}" height="{num(2 * box / 1.6)}" rx="4" fill="{fill}" stroke="#333"/>'
                f'<text x="{num(x)}" y="{num(y + 4)}" text-anchor="middle" fill="{text}">{g["index"]}</text>'
                + "".join(
                    f'<text class="rep" x="{num(cx + (x - cx) * out)}" y="{num(cy + (y - cy) * out + 4 + 11 * k)}" '
                    f'text-anchor="middle" fill="{self.color(dd)}">rep {rr}</text>'
                    for k, (dd, rr) in enumerate(holders)
                )
                + f"<title>GPU {g['index']}: {esc(label)}</title></g>"
            )
        return (
            f'<svg class="links" width="{num(size, 0)}" height="{num(size, 0)}" viewBox="0 0 {num(size, 0)} '
            f'{num(size, 0)}" role="img" aria-label="links between the GPUs of {esc(host.get("name"))}">'
            f"{''.join(lines)}{''.join(nodes)}</svg>"
        )

    def _matrix(self, host: dict) -> str:
        gpus = host.get("gpus") or []
        topo = host["topology"]
        head = "<tr><th></th>" + "".join(f"<th>GPU{g['index']}</th>" for g in gpus) + "</tr>"
        rows = []
        for a, g in enumerate(gpus):
            cells = []
            for b in range(len(gpus)):
                link = topo[a][b] if a < len(topo) and b < len(topo[a]) else "?"
                cls = "self" if a == b else link_class(link)
                cells.append(f'<td class="m-{cls}">{esc(link)}</td>')
            rows.append(f"<tr><th>GPU{g['index']}</th>{''.join(cells)}</tr>")
        return f'<table class="matrix">{head}{"".join(rows)}</table>'

    # -- memory -------------------------------------------------------------------------------
    def memory(self) -> str:
        gpus = [(h, g) for h in self.hosts for g in h.get("gpus") or []]
        out = []
        if gpus:
            widest = max(g["memory_total_bytes"] / GIB for _, g in gpus) or 1.0
            scale = BAR_PX / widest
            out.append(self._parts_legend())
            rows = [self._gpu_bar(h, g, scale) for h, g in gpus]
            out.append(f'<div class="bars" id="gpu-bars" data-px-per-gib="{num(scale, 6)}">{"".join(rows)}</div>')
        cpu_hosts = [h for h in self.hosts if self.on_cpu.get(h.get("name"))]
        if cpu_hosts:
            largest = max(_ram_gib(h) for h in cpu_hosts) or 1.0
            scale = RAM_BAR_PX / largest
            rows = [self._ram_bar(h, scale) for h in cpu_hosts]
            out.append(
                f'<h3>Host RAM (CPU replicas)</h3><div class="bars" id="ram-bars" data-px-per-gib="{num(scale, 6)}">'
                f"{''.join(rows)}</div>"
            )
        if not out:
            return "<p>Nothing is placed.</p>"
        return "".join(out)

    def _parts_legend(self) -> str:
        parts = list(PARTS) + [("used", "in use before the plan"), ("free", "free")]
        items = "".join(
            f'<span class="legend-item"><span class="seg-key seg-{k}"></span>{esc(w)}</span>' for k, w in parts
        )
        return f'<div class="legend">{items}</div>'

    def _seg(
        self, part: str, gib: float, scale: float, label: str, deployment: str = "", replica=None, first=False
    ) -> str:
        gib = max(0.0, gib)
        extra = f' data-deployment="{esc(deployment)}" data-replica="{replica}"' if deployment else ""
        cls = f"seg seg-{part}" + (" seg-first" if first else "")
        return (
            f'<div class="{cls}" data-part="{part}" data-gib="{num(gib, 3)}"{extra} '
            f'style="width:{num(gib * scale, 3)}px" title="{esc(label)}: {num(gib, 2)} GiB"></div>'
        )

    def _gpu_bar(self, host: dict, gpu: dict, scale: float) -> str:
        name = host.get("name")
        total = gpu["memory_total_bytes"] / GIB
        used_before = (gpu.get("memory_used_bytes") or 0) / GIB
        segs = []
        held = 0.0
        labels = []
        for d, r in self.on_gpu.get((name, gpu["index"]), []):
            dep = self.dep(d)
            per = dep.estimate.get("per_gpu_gib") or {}
            for n, (key, words) in enumerate(PARTS):
                value = float(per.get(key) or 0.0)
                held += value
                segs.append(self._seg(key, value, scale, f"{dep.name} rep {r} {words}", dep.name, r, n == 0))
            labels.append(f"{dep.name} rep {r}: {num(float(per.get('total') or 0.0))} GiB")
        if used_before > 0:
            segs.append(self._seg("used", used_before, scale, "in use before the plan"))
        free = max(0.0, total - used_before - held)
        segs.append(self._seg("free", free, scale, "free"))
        what = "; ".join(labels) or "nothing placed"
        return (
            f'<div class="bar-row" data-host="{esc(name)}" data-gpu="{gpu["index"]}" data-total-gib="{num(total, 3)}">'
            f'<div class="bar-label">{esc(name)} GPU {gpu["index"]}</div>'
            f'<div class="bar" style="width:{num(total * scale, 3)}px">{"".join(segs)}</div>'
            f'<div class="bar-note">{esc(what)}; {num(free)} of {num(total)} GiB free</div></div>'
        )

    def _ram_bar(self, host: dict, scale: float) -> str:
        name = host.get("name")
        total = _ram_gib(host)
        segs = []
        held = 0.0
        for d, r in self.on_cpu.get(name, []):
            dep = self.dep(d)
            per = dep.estimate.get("per_gpu_gib") or {}
            whole = dep.host_gib
            parts = [(k, float(per.get(k) or 0.0), w) for k, w in RAM_PARTS]
            rest = max(0.0, whole - sum(v for _, v, _ in parts))
            for n, (key, value, words) in enumerate(parts + [("overhead", rest, "overhead")]):
                part = {"host_weights": "weights", "host_kv_cache": "kv_cache"}.get(key, key)
                held += value
                segs.append(self._seg(part, value, scale, f"{dep.name} rep {r} {words}", dep.name, r, n == 0))
        free = max(0.0, total - held)
        segs.append(self._seg("free", free, scale, "available"))
        return (
            f'<div class="bar-row" data-host="{esc(name)}" data-total-gib="{num(total, 3)}">'
            f'<div class="bar-label">{esc(name)} RAM</div>'
            f'<div class="bar" style="width:{num(total * scale, 3)}px">{"".join(segs)}</div>'
            f'<div class="bar-note">{num(held)} GiB for {len(self.on_cpu.get(name, []))} CPU replica(s); '
            f"{num(free)} of {num(total)} GiB available left</div></div>"
        )

    # -- serving ------------------------------------------------------------------------------
    def serving(self) -> str:
        if not len(self.plan):
            return "<p>No deployment.</p>"
        return "".join(self._serving_of(d, dep) for d, dep in enumerate(self.plan))

    def _serving_of(self, d: int, dep: Deployment) -> str:
        est = dep.estimate
        tps = est.get("decode_tokens_per_s") or {}
        rows = [
            ("sequences at once", est.get("served_sequences", "?")),
            ("KV cache per replica", f"{est.get('kv_cache_tokens', '?')} tokens"),
            ("decode tokens/s per sequence", num(tps.get("per_sequence") or 0, 1)),
            ("decode tokens/s in total", num(tps.get("aggregate") or 0, 0)),
        ]
        block = est.get("serving")
        body = ""
        if block:
            rows += _serving_rows(block)
            curve = block.get("curve") or []
            body = _curve_svgs(block, curve, self.color(d)) if curve else "<p>The serving estimate has no curve.</p>"
            verdict = block.get("meets_targets")
            if verdict is not None:
                badge = "meets" if verdict else "misses"
                body = f'<p class="badge badge-{badge}">{badge} its targets</p>' + body
        else:
            body = '<p class="no-serving">no serving estimate in this plan</p>'
        cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
        return (
            f'<section class="serving" data-deployment="{esc(dep.name)}"><h3>'
            f'<span class="swatch" style="--c:{self.color(d)}"></span>{esc(dep.name)}</h3>'
            f'<div class="serving-body"><table class="facts">{cells}</table><div>{body}</div></div></section>'
        )

    # -- reasons and rejected -----------------------------------------------------------------
    def reasons(self) -> str:
        out = []
        for d, dep in enumerate(self.plan):
            items = []
            for line in dep.doc.get("reasons") or []:
                cls = ' class="not-as-asked"' if str(line).startswith(NOT_AS) else ""
                items.append(f"<li{cls}>{esc(line)}</li>")
            out.append(
                f'<section data-deployment="{esc(dep.name)}"><h3><span class="swatch" style="--c:{self.color(d)}">'
                f"</span>{esc(dep.name)}</h3><ol>{''.join(items)}</ol></section>"
            )
        notes = self.doc.get("notes") or []
        if notes:
            out.append("<h3>Notes</h3><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
        return "".join(out)

    def rejected(self) -> str:
        rows = self.doc.get("rejected") or []
        if not rows:
            return "<p>No alternative was rejected.</p>"
        head = (
            '<tr><th data-sort="num" aria-sort="ascending">#</th><th data-sort="text">candidate</th>'
            '<th data-sort="text">reason</th></tr>'
        )
        body = "".join(
            f"<tr><td>{n}</td><td>{esc(r.get('candidate', ''))}</td><td>{esc(r.get('reason', ''))}</td></tr>"
            for n, r in enumerate(rows, 1)
        )
        return (
            f"<p>{len(rows)} alternative(s); click a column to sort.</p>"
            f'<table class="sortable" id="rejected-table"><thead>{head}</thead><tbody>{body}</tbody></table>'
        )


def _link(host: dict, a: int, b: int) -> str | None:
    """The link between the a-th and b-th GPU of ``host``: its topology matrix entry; without a
    matrix, what the planner assumes from NUMA nodes (placement.link_rank): the same node
    'NODE', different nodes 'SYS', marked as such."""
    topo = host.get("topology")
    if topo:
        return topo[a][b] if a < len(topo) and b < len(topo[a]) else None
    gpus = host.get("gpus") or []
    na, nb = gpus[a].get("numa_node"), gpus[b].get("numa_node")
    if na is not None and nb is not None and na >= 0 and nb >= 0:
        return "NODE (NUMA)" if na == nb else "SYS (NUMA)"
    return None


def _ram_gib(host: dict) -> float:
    return (host.get("memory_available_bytes") or host.get("memory_total_bytes") or 0) / GIB


def _serving_rows(block: dict) -> list[tuple[str, str]]:
    rows = []
    work = f"{block.get('input_tokens', '?')} in, {block.get('output_tokens', '?')} out"
    rows.append(("workload", f"{work}, {block.get('concurrency', '?')} at once"))
    if block.get("ttft_s") is not None:
        rows.append(("time to first token", f"{num(block['ttft_s'] * 1000, 0)} ms"))
    if block.get("tpot_s") is not None:
        rows.append(("time per output token", f"{num(block['tpot_s'] * 1000, 1)} ms"))
    if block.get("tokens_per_s_per_user") is not None:
        rows.append(("tokens/s per user", num(block["tokens_per_s_per_user"], 1)))
    if block.get("output_tokens_per_s") is not None:
        rows.append(("output tokens/s in total", num(block["output_tokens_per_s"], 0)))
    if block.get("output_tokens_per_s_per_gpu") is not None:
        rows.append(("output tokens/s per GPU", num(block["output_tokens_per_s_per_gpu"], 1)))
    if block.get("max_concurrency_within_targets") is not None:
        rows.append(("most users within targets", str(block["max_concurrency_within_targets"])))
    targets = block.get("targets") or {}
    if targets:
        parts = []
        if targets.get("max_ttft_ms") is not None:
            parts.append(f"TTFT ≤ {targets['max_ttft_ms']} ms")
        if targets.get("max_tpot_ms") is not None:
            parts.append(f"TPOT ≤ {targets['max_tpot_ms']} ms")
        rows.append(("targets", ", ".join(parts)))
    cal = block.get("calibration")
    if cal:
        rows.append(
            (
                "calibrated by",
                f"{cal.get('measurement', '?')} (TTFT × {cal.get('ttft_factor', '?')}, "
                f"TPOT × {cal.get('tpot_factor', '?')})",
            )
        )
    return rows


def _curve_svgs(block: dict, curve: list[dict], color: str) -> str:
    targets = block.get("targets") or {}
    points = sorted(curve, key=lambda p: p["concurrency"])
    at = block.get("concurrency")
    return (
        '<div class="curves">'
        + _chart(
            "TTFT",
            "ms",
            [(p["concurrency"], p["ttft_s"] * 1000) for p in points],
            targets.get("max_ttft_ms"),
            at,
            color,
        )
        + _chart(
            "TPOT",
            "ms",
            [(p["concurrency"], p["tpot_s"] * 1000) for p in points],
            targets.get("max_tpot_ms"),
            at,
            color,
        )
        + "</div>"
    )


def _chart(name: str, unit: str, pts: list[tuple[float, float]], target, at, color: str) -> str:
    """One curve against concurrency (a log2 axis when it spans more than 8×), with the
    target as a dashed line and the plan's concurrency as a dotted one."""
    w, h, left, right, top, bottom = 360.0, 220.0, 52.0, 12.0, 14.0, 34.0
    xs = [x for x, _ in pts] + ([at] if at else [])
    lo, hi = min(xs), max(xs)
    log = lo > 0 and hi / lo > 8

    def fx(x: float) -> float:
        if hi == lo:
            return left + (w - left - right) / 2
        if log:
            return left + (math.log2(x) - math.log2(lo)) / (math.log2(hi) - math.log2(lo)) * (w - left - right)
        return left + (x - lo) / (hi - lo) * (w - left - right)

    ys = [y for _, y in pts] + ([target] if target else [])
    ymax = max(ys) * 1.1 or 1.0

    def fy(y: float) -> float:
        return top + (1 - y / ymax) * (h - top - bottom)

    path = " ".join(f"{'M' if k == 0 else 'L'}{num(fx(x))},{num(fy(y))}" for k, (x, y) in enumerate(pts))
    dots = "".join(
        f'<circle class="pt" data-concurrency="{num(x, 0) if float(x).is_integer() else num(x, 2)}" '
        f'data-value="{num(y, 3)}" cx="{num(fx(x))}" cy="{num(fy(y))}" r="3" fill="{color}">'
        f"<title>{num(x, 0) if float(x).is_integer() else num(x, 2)} at once: {num(y, 1)} {unit}</title></circle>"
        for x, y in pts
    )
    extra = ""
    if target:
        extra += (
            f'<line class="target" x1="{num(left)}" x2="{num(w - right)}" y1="{num(fy(target))}" '
            f'y2="{num(fy(target))}" '
            f'stroke="#d6453b" stroke-dasharray="5 4"/><text x="{num(w - right)}" y="{num(fy(target) - 4)}" '
            f'text-anchor="end" class="axis">target {esc(target)} {unit}</text>'
        )
    if at:
        extra += (
            f'<line class="operating" x1="{num(fx(at))}" x2="{num(fx(at))}" y1="{num(top)}" y2="{num(h - bottom)}" '
            f'stroke="#555" stroke-dasharray="1 3"/>'
        )
    ticks = "".join(
        f'<text class="axis" x="{num(fx(x))}" y="{num(h - bottom + 14)}" text-anchor="middle">'
        f"{num(x, 0) if float(x).is_integer() else num(x, 1)}</text>"
        for x, _ in pts
    )
    yticks = "".join(
        f'<text class="axis" x="{num(left - 6)}" y="{num(fy(v) + 4)}" text-anchor="end">'
        f"{num(v, 0 if ymax > 20 else 1)}</text>"
        f'<line x1="{num(left)}" x2="{num(w - right)}" y1="{num(fy(v))}" y2="{num(fy(v))}" stroke="#eee"/>'
        for v in (0.0, ymax / 2, ymax / 1.1)
    )
    return (
        f'<svg class="curve" data-series="{name}" width="{num(w, 0)}" height="{num(h, 0)}" '
        f'viewBox="0 0 {num(w, 0)} {num(h, 0)}" '
        f'role="img" aria-label="{name} against concurrency">{yticks}'
        f'<line x1="{num(left)}" x2="{num(left)}" y1="{num(top)}" y2="{num(h - bottom)}" stroke="#888"/>'
        f'<line x1="{num(left)}" x2="{num(w - right)}" y1="{num(h - bottom)}" y2="{num(h - bottom)}" stroke="#888"/>'
        f'{extra}<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>{dots}{ticks}'
        f'<text class="axis" x="{num((w + left) / 2)}" y="{num(h - 4)}" text-anchor="middle">users at once'
        f"{' (log scale)' if log else ''}</text>"
        f'<text class="axis title" x="{num(left)}" y="{num(top - 2)}">{name} ({unit})</text></svg>'
    )
