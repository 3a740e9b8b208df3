"""report.html and compare.html: the run's tables beside its videos, one self-contained page each.

No network: CSS and JS inline, the Pareto plot as a data URI, videos by relative path (the folder can be zipped
or served as it is). The scored mp4s (H.264 yuv444p at crf 0) are kept as they are; Chromium does not play that
profile, so each gets a browser preview under `previews/` (H.264 yuv420p, upscaled with nearest-neighbour to at
least PREVIEW_SIZE pixels on its long side, even sizes). docs/report.md describes the page.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

PREVIEW_DIR, PREVIEW_SIZE, PREVIEW_CRF = "previews", 192, 18
COMPARE_DROPS_SHOWN = 6
COMPUTE_COLUMNS = (("tflops_per_video", "TFLOPs / video", False),
                   ("mixer_tflops_per_video", "mixer TFLOPs / video", False),
                   ("seconds_per_video", "s / video", False), ("peak_mb", "peak MB", False))
TOTAL_COLUMNS = (("vbench_total", "VBench total", True), ("vbench_total_present", "VBench total (present)", True),
                 ("vbench_quality_present", "Quality (present)", True),
                 ("vbench_semantic_present", "Semantic (present)", True))


# ---------------------------------------------------------------- previews

def preview_name(video: str) -> str:
    """Where a scored video's browser preview goes, relative to the run directory."""
    path = Path(video)
    if path.is_absolute() or ".." in path.parts:   # `eval` reads videos from elsewhere: a name that cannot collide
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
        return f"{PREVIEW_DIR}/external/{path.stem}-{digest}.mp4"
    return f"{PREVIEW_DIR}/{path.with_suffix('.mp4').as_posix()}"


def upscale(frames: np.ndarray, size: int = PREVIEW_SIZE) -> np.ndarray:
    """Nearest-neighbour upscale by a whole factor to at least `size` on the long side, cropped to even sizes
    (yuv420p halves the chroma planes); a video already that large keeps its size."""
    t, h, w, _ = frames.shape
    k = max(1, math.ceil(size / max(h, w)))
    frames = frames.repeat(k, axis=1).repeat(k, axis=2) if k > 1 else frames
    h, w = frames.shape[1] - frames.shape[1] % 2, frames.shape[2] - frames.shape[2] % 2
    return np.ascontiguousarray(frames[:, :max(h, 2), :max(w, 2)])


def encode_preview(frames: np.ndarray, fps: float, path: Path) -> Path:
    """H.264 yuv420p mp4 (faststart), atomically (evaluators.video.write_video's temp file and rename)."""
    from evaluators.video import write_video

    return write_video(path, frames, fps, codec="libx264", pix_fmt="yuv420p", crf=PREVIEW_CRF, faststart=True)


def write_previews(root, videos, dest=None, prefix: str = "") -> dict[str, str]:
    """{video as listed: preview path relative to `dest`} for each video found under `root`; a preview newer than
    its video is kept. Missing videos (a committed run without its videos) have none."""
    from evaluators.video import VideoReadError, read_video

    root = Path(root)
    dest = Path(dest) if dest is not None else root
    found = {}
    for video in dict.fromkeys(v for v in videos if isinstance(v, str) and v):
        source = Path(video) if Path(video).is_absolute() else root / video
        if not source.is_file():
            continue
        name = prefix + preview_name(video)
        target = dest / name
        try:
            if not (target.is_file() and target.stat().st_mtime >= source.stat().st_mtime):
                clip = read_video(source)
                encode_preview(upscale(clip.frames), clip.fps or 8.0, target)
        except (VideoReadError, OSError, ValueError):
            continue   # an unreadable video is already a failed row in per_video.csv; the cell says "no video"
        found[video] = name
    return found


# ---------------------------------------------------------------- data

def metric_groups(columns) -> list[tuple[str, list[tuple[str, str, bool]]]]:
    """[(group title, [(column, label, higher_is_better)])] in the registry's order."""
    from evaluators import EVALUATORS
    from evaluators.vbench.scoring import NORMALIZATION

    def dims(test):
        return [(d, d, cls.higher_is_better) for d, cls in EVALUATORS.items() if d in columns and test(d, cls)]

    groups = [
        ("VBench Quality", dims(lambda d, c: c.group == "vbench" and NORMALIZATION.get(d, "q")[-1] == "quality")),
        ("VBench Semantic", dims(lambda d, c: c.group == "vbench" and NORMALIZATION.get(d, "q")[-1] == "semantic")),
        ("VBench totals", [c for c in TOTAL_COLUMNS if c[0] in columns]),
        ("World checks", dims(lambda d, c: c.group == "world")),
        ("Other", dims(lambda d, c: c.group not in ("vbench", "world", "compute"))),
        ("Compute", dims(lambda d, c: c.group == "compute") + [c for c in COMPUTE_COLUMNS if c[0] in columns])]
    return [(title, cols) for title, cols in groups if cols]


def video_scores(per_video: pd.DataFrame) -> pd.DataFrame:
    """A row per ok (model, prompt, seed, sample, dimension) with the video's own aggregate (the summary's scale)."""
    from benchmarks.reporting.aggregate import _aggregate, _records

    ok = per_video[per_video["status"] == "ok"]
    if not len(ok):
        return ok.assign(value=pd.Series(dtype=float))
    values = [_aggregate(r.dimension, [r]) for r in _records(ok)]
    return ok.assign(value=np.asarray(values, dtype=float))


def key_text(column: pd.Series) -> pd.Series:
    """A key column (prompt, seed, sample) as display text, the same under pandas 2 and 3: a missing value (an
    external video's seed) is "" rather than NaN (pandas 3's `astype(str)` keeps NaN, and `groupby` drops NaN keys),
    and a whole float read back from a CSV with gaps (1.0) is "1"."""
    def text(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            return ""
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return str(int(value))
        return str(value)

    return pd.Series([text(v) for v in column], index=column.index, dtype=object)


def prompt_kinds(suite: dict | None) -> dict[str, str]:
    """{prompt: kind} of the suite's world prompts (their full_info's `world_kind`); {} when there are none."""
    suite = suite or {}
    try:
        if suite.get("prompts") == "world":
            from benchmarks.run.suites import WORLD_SUITE_SEED
            from m4v.world.captions import prompt_suite

            entries = prompt_suite(int(suite.get("per_kind") or 1), seed=WORLD_SUITE_SEED,
                                   n_frames=int((suite.get("sampling") or {}).get("frames") or 16))
        elif suite.get("prompts"):
            entries = json.loads(Path(suite["prompts"]).read_text())
        else:
            return {}
        return {e["prompt_en"]: e.get("world_kind", "") for e in entries if isinstance(e, dict) and "prompt_en" in e}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _num(value) -> float | None:
    """A finite float or None (JSON has no NaN)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _fmt(value, digits: int = 3) -> str:
    value = _num(value)
    if value is None:
        return "–"
    return f"{value:.{digits}g}" if abs(value) >= 1000 or (value and abs(value) < 0.001) else f"{value:.{digits}f}"


# JSON inside <script>: `<` `>` `&` and the JS line separators as \\uXXXX (the same string to JSON.parse), so no
# text (a prompt holding `<!--`, `</script` or `<script`) can end the element or switch the HTML tokenizer into its
# escaped-script states, which would swallow the page's own script
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _json_script(element_id: str, data) -> str:
    """Data for the page's script, inert inside <script> whatever its strings hold."""
    text = json.dumps(data, allow_nan=False)
    for char, escaped in _SCRIPT_ESCAPES.items():
        text = text.replace(char, escaped)
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _src(path: str) -> str:
    """A relative path as a URL (spaces, #, ? escaped), HTML-escaped for an attribute."""
    return html.escape(quote(path, safe="/"))


# ---------------------------------------------------------------- page parts

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse}th,td{padding:3px 6px;border:1px solid #ddd;vertical-align:top}
th{background:#f5f5f5}th.sortable{cursor:pointer}th.sortable:hover{background:#e8eef8}
.scroll{overflow-x:auto}.ci{color:#777;font-size:.85em;white-space:nowrap}.num{text-align:right}
.sub{color:#b35900;font-weight:bold}.note{color:#555;max-width:70em}
.charts{display:flex;flex-wrap:wrap;gap:10px}.chart{border:1px solid #eee;padding:4px}
#controls{display:flex;flex-wrap:wrap;gap:12px;margin:.5em 0;position:sticky;top:0;background:#fff;
 padding:6px 0;z-index:2}
.cell video{width:160px;height:160px;image-rendering:pixelated;background:#000;display:block}
.cell .focus{font-weight:bold}.cell table{font-size:.8em}.cell td,.cell th{border:none;padding:0 4px}
.novideo{width:160px;height:160px;background:#eee;color:#777;display:flex;align-items:center;
 justify-content:center;text-align:center}
.pair{display:flex;gap:8px}.regressed{color:#b00;font-weight:bold}
"""

TABLE_SORT_JS = """
function sortableTable(table){
  const heads=table.querySelectorAll('th.sortable');
  heads.forEach(th=>th.addEventListener('click',()=>{
    const col=+th.dataset.col, body=table.tBodies[0];
    const dir=th.dataset.dir==='desc'?'asc':'desc';
    heads.forEach(h=>delete h.dataset.dir); th.dataset.dir=dir;
    const key=tr=>{const c=tr.children[col];const v=c&&c.dataset.v;return v===undefined||v===''?null:
      (isNaN(+v)?v:+v);};
    const rows=[...body.rows].sort((a,b)=>{const x=key(a),y=key(b);
      if(x===null)return 1;if(y===null)return -1;
      const r=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y));
      return dir==='asc'?r:-r;});
    rows.forEach(r=>body.appendChild(r));
  }));
}
document.querySelectorAll('table.sorted').forEach(sortableTable);
"""

GALLERY_JS = """
(function(){
const data=JSON.parse(document.getElementById('gallery-data').textContent);
const body=document.querySelector('#gallery tbody');
const $=id=>document.getElementById(id);
const rows=[...body.rows];
function value(i,model,metric){const s=data.rows[i].scores[model];return s&&metric in s?s[metric]:null;}
function key(i){
  const mode=$('s-mode').value, metric=$('s-metric').value;
  if(mode==='prompt')return null;
  if(mode==='diff'){const a=value(i,$('s-a').value,metric),b=value(i,$('s-b').value,metric);
    return a===null||b===null?null:Math.abs(a-b);}
  const m=$('s-model').value;
  if(m)return value(i,m,metric);
  const v=data.models.map(x=>value(i,x,metric)).filter(x=>x!==null);
  return v.length?v.reduce((p,q)=>p+q,0)/v.length:null;
}
function update(){
  const dim=$('f-dim').value, kind=$('f-kind').value, metric=$('s-metric').value;
  const asc=$('s-order').value==='asc', mode=$('s-mode').value;
  const order=rows.map(tr=>[tr,+tr.dataset.i,key(+tr.dataset.i)]);
  order.sort((p,q)=>{if(mode==='prompt')return p[1]-q[1];
    if(p[2]===null&&q[2]===null)return p[1]-q[1];if(p[2]===null)return 1;if(q[2]===null)return -1;
    const r=asc?p[2]-q[2]:q[2]-p[2];return r||p[1]-q[1];});
  let shown=0;
  order.forEach(([tr,i])=>{body.appendChild(tr);const r=data.rows[i];
    const ok=(!dim||r.dims.includes(dim))&&(!kind||r.kind===kind);tr.hidden=!ok;shown+=ok;
    tr.querySelectorAll('td.cell').forEach(td=>{const v=value(i,td.dataset.model,metric);
      td.querySelector('.focus').textContent=metric+': '+(v===null?'–':v.toFixed(3));});});
  $('shown').textContent=shown+' of '+rows.length+' prompts';
}
['f-dim','f-kind','s-mode','s-metric','s-model','s-a','s-b','s-order'].forEach(id=>$(id).addEventListener('change',update));
update();
})();
"""


def _select(element_id: str, label: str, options, selected=None) -> str:
    """A labelled <select>; options as (value, text)."""
    opts = "".join(f'<option value="{html.escape(str(v))}"{" selected" if v == selected else ""}>{html.escape(str(t))}'
                   "</option>" for v, t in options)
    return f'<label>{html.escape(label)} <select id="{element_id}">{opts}</select></label>'


def summary_table(summary: pd.DataFrame) -> str:
    """Models as rows, metrics grouped, each cell its value with the 95% interval; substitutes marked †."""
    from evaluators import EVALUATORS

    groups = metric_groups(summary.columns)
    top = ['<th rowspan="2" class="sortable" data-col="0">model</th>']
    sub, col = [], 1
    for title, cols in groups:
        top.append(f'<th colspan="{len(cols)}">{html.escape(title)}</th>')
        for name, label, higher in cols:
            substitute = (name in EVALUATORS and EVALUATORS[name].group == "vbench"
                          and not all(summary.get(f"{name}_faithful", pd.Series([False])).astype(bool)))
            mark = ' <span class="sub" title="substitute backbone: not VBench\'s number">†</span>' if substitute else ""
            arrow = "↑" if higher else "↓"
            sub.append(f'<th class="sortable" data-col="{col}" title="click to sort">{html.escape(label)} {arrow}'
                       f"{mark}</th>")
            col += 1
    body = []
    for row in summary.to_dict("records"):
        cells = [f'<th data-v="{html.escape(str(row["model"]))}">{html.escape(str(row["model"]))}</th>']
        for _, cols in groups:
            for name, _, _ in cols:
                value, low = _num(row.get(name)), _num(row.get(f"{name}_ci_low"))
                high = _num(row.get(f"{name}_ci_high"))
                n = row.get(f"{name}_n")
                ci = f'<br><span class="ci">{_fmt(low)}–{_fmt(high)}</span>' if low is not None else ""
                count = f'<span class="ci"> n={int(n)}</span>' if _num(n) is not None and name in EVALUATORS else ""
                v = "" if value is None else repr(value)
                cells.append(f'<td class="num" data-v="{v}">{_fmt(value)}{count}{ci}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table class="sorted" id="summary"><thead><tr>{"".join(top)}</tr>'
            f'<tr>{"".join(sub)}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def interval_charts(summary: pd.DataFrame) -> str:
    """A small SVG per metric: each model's value and 95% interval on one axis."""
    from evaluators import EVALUATORS

    charts = []
    models = [str(m) for m in summary["model"]]
    width, left, row_h = 300, 130, 18
    for dim in [d for d in EVALUATORS if d in summary.columns]:
        lows = summary.get(f"{dim}_ci_low", summary[dim]).fillna(summary[dim])
        highs = summary.get(f"{dim}_ci_high", summary[dim]).fillna(summary[dim])
        values = pd.concat([lows, highs, summary[dim]]).to_numpy(float)
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        lo, hi = float(values.min()), float(values.max())
        pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad

        def x(v, lo=lo, hi=hi):
            return left + (width - left - 10) * (v - lo) / (hi - lo)

        height = row_h * len(models) + 30
        parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(dim)}">',
                 f'<text x="4" y="12" font-size="12" font-weight="bold">{html.escape(dim)} '
                 f'{"↑" if EVALUATORS[dim].higher_is_better else "↓"}</text>']
        for i, (model, row) in enumerate(zip(models, summary.to_dict("records"))):
            y = 26 + i * row_h
            parts.append(f'<text x="4" y="{y + 4}" font-size="11">{html.escape(model[:20])}</text>')
            v, a, b = _num(row.get(dim)), _num(row.get(f"{dim}_ci_low")), _num(row.get(f"{dim}_ci_high"))
            if a is not None and b is not None:
                parts.append(f'<line x1="{x(a):.1f}" x2="{x(b):.1f}" y1="{y}" y2="{y}" stroke="#4477aa" '
                             'stroke-width="2"/>')
            if v is not None:
                parts.append(f'<circle cx="{x(v):.1f}" cy="{y}" r="3.5" fill="#223"><title>{html.escape(model)}: '
                             f"{_fmt(v)} ({_fmt(a)}–{_fmt(b)})</title></circle>")
        axis_y = 26 + len(models) * row_h - 8
        parts.append(f'<text x="{left}" y="{axis_y + 12}" font-size="10" fill="#777">{_fmt(lo)}</text>'
                     f'<text x="{width - 10}" y="{axis_y + 12}" font-size="10" fill="#777" '
                     f'text-anchor="end">{_fmt(hi)}</text></svg>')
        charts.append(f'<div class="chart">{"".join(parts)}</div>')
    return f'<div class="charts">{"".join(charts)}</div>'


def protocol_section(card: dict) -> str:
    """The run's protocol card and whether it is comparable with VBench's leaderboard (benchmarks/protocol_card.py)."""
    from benchmarks.run.protocol_card import FPS_NOTE, card_rows, comparable_line

    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in card_rows(card))
    verdict = "ok" if card.get("vbench_comparable") else "regressed"
    return (f'<h2 id="protocol">Protocol</h2><table>{rows}</table><p class="{verdict}" id="vbench-comparable">'
            f"{html.escape(comparable_line(card))}</p><p class=\"note\">VBench's protocol: "
            f"{html.escape(str(card.get('vbench_protocol', {}).get('source', '')))}. {html.escape(FPS_NOTE)}.</p>")


def precision_section(precision: pd.DataFrame) -> str:
    """The 'how many prompts' table (benchmarks.reporting.precision.precision_table)."""
    from benchmarks.reporting.precision import clustered
    from benchmarks.stats import as_prompts

    if precision is None or not len(precision):
        return ""
    several = clustered(precision)

    def rho(r) -> str:
        if not several:
            return ""
        value = _num(r["icc"])
        shown, sort_key = ("–", "") if value is None else (f"{value:.2f}", repr(value))
        return f'<td class="num" data-v="{sort_key}">{shown}</td>'

    rows = "".join(
        f'<tr><th>{html.escape(r["metric"])}</th><td class="num" data-v="{int(r["n"])}">{int(r["n"])}</td>'
        f'<td class="num" data-v="{r["halfwidth"]!r}">±{_fmt(r["halfwidth"])}</td>'
        f'<td class="num" data-v="{r["sd"]!r}">{_fmt(r["sd"])}</td>{rho(r)}'
        f'<td class="num" data-v="{_num(r["n_half"]) or ""}">{as_prompts(r["n_half"], r["samples"])}</td>'
        f'<td class="num" data-v="{_num(r["n_quarter"]) or ""}">{as_prompts(r["n_quarter"], r["samples"])}</td></tr>'
        for r in precision.to_dict("records"))
    head = "".join(f'<th class="sortable" data-col="{i}">{h}</th>' for i, h in enumerate(
        ["metric", "n", "95% ± at n", "s (per video)", *(["ρ (within prompt)"] if several else []), "n for ±0.5×",
         "n for ±0.25×"]))
    return ('<h2 id="precision">How many prompts</h2><p class="note">The 95% half-width at this run\'s n (the widest '
            "model's bootstrap interval) and the videos, as prompts × samples, that would shrink it to 0.5× and "
            "0.25×: n = (z·s/h)², s the largest per-video standard deviation over the models (normal "
            "approximation; for 0/1 metrics s = √(p(1−p)))"
            + ("; a prompt's m samples are correlated (ρ): prompts = (z·s/h)²·(1 + (m−1)ρ)/m" if several else "")
            + ". <code>m4v-bench plan --from RUN --detect Δ</code> "
            f'plans paired comparisons.</p><table class="sorted"><thead><tr>{head}</tr></thead><tbody>{rows}'
            "</tbody></table>")


def gallery(per_video: pd.DataFrame, previews: dict[str, str], kinds: dict[str, str], models: list[str],
            primary: str | None) -> str:
    """A row per (prompt, sample), a column per model: the looping preview and that video's scores."""
    from evaluators import EVALUATORS

    scored = video_scores(per_video)
    keys = ["prompt", "seed", "sample"] if "sample" in per_video else ["prompt", "seed"]
    per_video = per_video.assign(**{c: key_text(per_video[c]) for c in keys})
    scored = scored.assign(**{c: key_text(scored[c]) for c in keys})
    entries = per_video.drop_duplicates(keys)[keys].to_records(index=False).tolist()
    dims_all = [d for d in EVALUATORS if d in set(per_video["dimension"])]
    by_key = {k: g for k, g in per_video.groupby(keys)}
    values = {k: g for k, g in scored.groupby(keys)}
    multi = per_video.groupby("prompt")[keys[1:]].nunique().max().max() > 1 if len(per_video) else False
    rows_data, rows_html = [], []
    for i, key in enumerate(entries):
        key = tuple(key)
        rows = by_key.get(key, per_video.iloc[:0])
        prompt = key[0]
        kind = kinds.get(prompt, "")
        dims = [d for d in dims_all if (rows["dimension"] == d).any()]
        scores = {}
        part = values.get(key)
        cells = []
        for model in models:
            mine = part[part["model"] == model] if part is not None else scored.iloc[:0]
            scores[model] = {r.dimension: _num(r.value) for r in mine.itertuples() if _num(r.value) is not None}
            video_rows = rows[rows["model"] == model]["video"]
            video = next((v for v in video_rows if isinstance(v, str) and v), None)
            if video in previews:
                media = (f'<video src="{_src(previews[video])}" autoplay loop muted playsinline preload="auto" '
                         f'title="{html.escape(video)}"></video>')
            else:
                media = '<div class="novideo">no video in this folder</div>'
            shown = sorted(scores[model].items(), key=lambda kv: (kv[0] != primary, dims_all.index(kv[0])
                                                                  if kv[0] in dims_all else 0))
            table = "".join(f"<tr><th>{html.escape(d)}</th><td>{_fmt(v)}</td></tr>" for d, v in shown)
            cells.append(f'<td class="cell" data-model="{html.escape(model)}">{media}<div class="focus"></div>'
                         f"<details><summary>{len(shown)} scores</summary><table>{table}</table></details></td>")
        rows_data.append({"prompt": prompt, "kind": kind, "dims": dims, "scores": scores})
        label = html.escape(prompt) + (f'<br><span class="ci">{html.escape(kind)}</span>' if kind else "")
        if multi:
            label += f'<br><span class="ci">seed {html.escape(key[1] or "none")}, sample {html.escape(key[-1])}</span>'
        rows_html.append(f'<tr data-i="{i}"><th>{label}</th>{"".join(cells)}</tr>')
    kind_options = [("", "all")] + [(k, k) for k in sorted({k for k in kinds.values() if k})]
    metric_default = primary if primary in dims_all else (dims_all[0] if dims_all else "")
    controls = "".join([
        _select("f-dim", "dimension", [("", "all")] + [(d, d) for d in dims_all]),
        _select("f-kind", "prompt kind", kind_options),
        _select("s-mode", "sort by", [("prompt", "prompt order"), ("metric", "metric"),
                                      ("diff", "largest difference A vs B")]),
        _select("s-metric", "metric", [(d, d) for d in dims_all], metric_default),
        _select("s-model", "of model", [("", "mean of models")] + [(m, m) for m in models]),
        _select("s-a", "A", [(m, m) for m in models], models[0] if models else None),
        _select("s-b", "B", [(m, m) for m in models], models[1] if len(models) > 1 else None),
        _select("s-order", "order", [("desc", "high first"), ("asc", "low first")]),
        '<span id="shown"></span>'])
    head = "<th>prompt</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in models)
    return (f'<div id="controls">{controls}</div>'
            + _json_script("gallery-data", {"models": models, "rows": rows_data})
            + f'<div class="scroll"><table id="gallery"><thead><tr>{head}</tr></thead><tbody>{"".join(rows_html)}'
            "</tbody></table></div>")


def page(title: str, body: str, scripts: str = "") -> str:
    """One self-contained HTML document."""
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{html.escape(title)}</title><style>{CSS}</style></head>'
            f"<body>{body}<script>{TABLE_SORT_JS}{scripts}</script></body></html>\n")


def report_html(out, per_video: pd.DataFrame, summary: pd.DataFrame, provenance: dict | None, suite_name: str,
                primary: str | None, pareto: bytes | None = None, precision: pd.DataFrame | None = None) -> str:
    """report.html of a run directory `out` (previews written under out/previews as a side effect)."""
    from benchmarks.reporting.precision import clustered, precision_table

    out = Path(out)
    suite = (provenance or {}).get("suite") or {}
    samples = int(suite.get("samples") or 1)
    models = [str(m) for m in summary["model"]]
    previews = write_previews(out, per_video["video"]) if "video" in per_video else {}
    if precision is None:
        precision = precision_table(per_video, summary, samples)
    prov = provenance or {}
    meta = " · ".join(html.escape(str(x)) for x in (
        f"suite {suite_name}", f"{per_video['prompt'].nunique()} prompts × {samples} sample(s)",
        f"git {str(prov.get('git_commit') or '?')[:10]}", prov.get("command") or "") if x)
    substitutes = bool(summary.get("vbench_with_substitutes", pd.Series([False])).any())
    body = [f"<h1>{html.escape(suite_name)}</h1><p class=\"note\">{meta}</p>",
            '<p class="note">Aggregates with 95% percentile-bootstrap intervals over '
            + ("prompts (a prompt's samples resampled together; n = videos scored); " if clustered(precision)
               else "videos (n = videos scored); ")
            + "click a column to sort the models. "
            + ("† a VBench dimension computed with a substitute backbone: not VBench's number. " if substitutes else "")
            + (f"Primary metric: <b>{html.escape(primary)}</b>." if primary else "") + "</p>",
            '<h2 id="summary-table">Summary</h2>', summary_table(summary)]
    if prov.get("protocol"):
        body.append(protocol_section(prov["protocol"]))
    if pareto:
        body.append('<h2 id="pareto">Quality against compute</h2><img alt="Pareto plot" '
                    f'src="data:image/png;base64,{base64.b64encode(pareto).decode()}">')
    body += ['<h2 id="intervals">Intervals per metric</h2>', interval_charts(summary), precision_section(precision),
             f'<h2 id="gallery-title">Videos ({len(previews)} playable)</h2><p class="note">A row per prompt, a '
             "column per model: the video (a browser preview of the scored file, nearest-neighbour upscaled) and "
             "its scores. Filter by dimension (the prompts scored on it) or prompt kind; sort by a metric or by "
             "the largest difference between two models.</p>",
             gallery(per_video, previews, prompt_kinds(suite), models, primary)]
    return page(f"{suite_name}: report", "".join(body), GALLERY_JS)


# ---------------------------------------------------------------- compare.html

def paired_drops(base_rows: pd.DataFrame, new_rows: pd.DataFrame, dimension: str, higher_is_better: bool,
                 k: int = COMPARE_DROPS_SHOWN) -> pd.DataFrame:
    """The k samples of one metric whose score fell most from base to new (paired on prompt, seed)."""
    keys = ["prompt", "sample_id"] if "sample_id" in base_rows and "sample_id" in new_rows else [
        "prompt", "seed", *(["sample"] if "sample" in base_rows and "sample" in new_rows else [])]
    columns = [*keys, "score", *(["video"] if "video" in base_rows else [])]
    b = base_rows[(base_rows["dimension"] == dimension) & (base_rows["status"] == "ok")]
    n = new_rows[(new_rows["dimension"] == dimension) & (new_rows["status"] == "ok")]
    both = b.reindex(columns=columns).merge(n.reindex(columns=columns), on=keys, suffixes=("_base", "_new"))
    both["drop"] = (both["score_base"] - both["score_new"]) * (1 if higher_is_better else -1)
    return both[both["drop"] > 0].sort_values(["drop", "prompt"], ascending=[False, True]).head(k)


def compare_html(comparison, base, new, out) -> str:
    """compare.html: the metrics table and, per regressed metric, the largest paired drops side by side."""
    from benchmarks.reporting.runs import load_run
    from benchmarks.stats import units

    def n_prompts(r) -> int:   # a compare.csv written before the column existed counted pairs
        return int(r["n_prompts"]) if _num(r.get("n_prompts")) is not None else int(r["n_pairs"])

    out = Path(out)
    t = comparison.table
    base_run, new_run = load_run(base, check=False), load_run(new, check=False)   # compare checked them
    head = ["model", "metric", "n", "base", "new", "delta", "95% CI", "test", "p (Holm)", "MDE", "verdict"]
    rows = []
    for r in t.to_dict("records"):
        model = r["model_base"] if r["model_base"] == r["model_new"] else f"{r['model_base']} → {r['model_new']}"
        cls = ' class="regressed"' if r["regressed"] else ""
        verdict = r["verdict"]
        if verdict == "no significant change" and (_num(r.get("mde")) or 0) > 0:   # 0: no spread to resolve
            verdict += f"; cannot resolve differences below {_fmt(r['mde'])} at {units(r['n_pairs'], n_prompts(r))}"
        cells = [model, f"{r['dimension']} {'↑' if r['higher_is_better'] else '↓'}", int(r["n_pairs"]),
                 _fmt(r["mean_base"]), _fmt(r["mean_new"]), _fmt(r["delta"]),
                 f"{_fmt(r['ci_low'])} – {_fmt(r['ci_high'])}", r["test"], _fmt(r["p_holm"]), _fmt(r.get("mde")),
                 verdict]
        values = [model, r["dimension"], r["n_pairs"], r["mean_base"], r["mean_new"], r["delta"], r["ci_low"],
                  r["test"], r["p_holm"], r.get("mde"), r["verdict"]]
        rows.append(f"<tr{cls}>" + "".join(
            f'<td data-v="{html.escape(str(v if _num(v) is not None or isinstance(v, str) else ""))}">'
            f"{html.escape(str(c))}</td>" for c, v in zip(cells, values)) + "</tr>")
    head_html = "".join(f'<th class="sortable" data-col="{i}">{h}</th>' for i, h in enumerate(head))
    body = [f"<h1>compare</h1><p class=\"note\">base {html.escape(str(base))} · new {html.escape(str(new))}; paired "
            "on (prompt, seed, dimension), Wilcoxon signed-rank (exact sign test for 0/1 metrics; on per-prompt mean "
            "differences when a prompt has several samples), Holm across "
            "each model pair's metrics. MDE: the smallest paired difference detected with 80% power at this n "
            "(normal approximation at Holm's first level).</p>",
            f'<div class="scroll"><table class="sorted" id="metrics"><thead><tr>{head_html}</tr></thead><tbody>'
            f'{"".join(rows)}</tbody></table></div>', *[f'<p class="note">{html.escape(n)}</p>'
                                                        for n in comparison.notes]]
    regressed = t[t["regressed"]]
    body.append(f"<h2>Regressed metrics: {len(regressed)}</h2>")
    for r in regressed.to_dict("records"):
        b = base_run.per_video[base_run.per_video["model"] == r["model_base"]]
        n = new_run.per_video[new_run.per_video["model"] == r["model_new"]]
        drops = paired_drops(b, n, r["dimension"], bool(r["higher_is_better"]))
        base_dir = base_run.path if base_run.path.is_dir() else base_run.path.parent
        new_dir = new_run.path if new_run.path.is_dir() else new_run.path.parent
        shown = []
        for d in drops.to_dict("records"):
            sides = []
            for side, root, video, score in (("base", base_dir, d.get("video_base"), d["score_base"]),
                                             ("new", new_dir, d.get("video_new"), d["score_new"])):
                found = write_previews(root, [video], dest=out, prefix=f"{PREVIEW_DIR}/compare/{side}/")
                media = (f'<video src="{_src(found[video])}" autoplay loop muted playsinline preload="auto"></video>'
                         if video in found else '<div class="novideo">no video</div>')
                sides.append(f'<div class="cell"><b>{side}</b> {_fmt(score)}{media}</div>')
            sample = d["sample_id"] if "sample_id" in d else f"seed {d['seed']}"
            shown.append(f"<tr><th>{html.escape(str(d['prompt']))}<br><span class=\"ci\">{html.escape(sample)}, drop "
                         f"{_fmt(d['drop'])}</span></th><td><div class=\"pair\">{''.join(sides)}</div></td></tr>")
        body.append(f'<h3 class="regressed">{html.escape(r["model_new"])} {html.escape(r["dimension"])}: delta '
                    f'{_fmt(r["delta"])}, p (Holm) {_fmt(r["p_holm"])}</h3><p class="note">the {len(shown)} prompts '
                    "with the largest paired drops</p><table>" + "".join(shown) + "</table>")
    return page("compare", "".join(body))


# ---------------------------------------------------------------- `m4v-bench report`

def rewrite_report(run) -> Path:
    """Write report.html (and previews) for an existing run directory from its files, under the run's lock; COMPLETE
    lists it. A run another process is writing, or whose files changed after it completed, is refused."""
    from benchmarks.core.outputs import OutputLock, completion_problem, is_complete

    run = Path(run)
    needed = [run / "per_video.csv", run / "summary.csv"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise ValueError(f"{missing[0]}: not found (expected a result directory of `m4v-bench run`)")
    with OutputLock(run, flag="report"):   # a run writing RUN holds its lock: one line, nothing rewritten
        return _rewrite_locked(run, completion_problem(run) if is_complete(run) else None)


def _rewrite_locked(run: Path, changed: str | None) -> Path:
    """rewrite_report under RUN's lock; `changed`: a file changed after the run completed (refused: rewriting
    COMPLETE would launder it)."""
    from benchmarks.core.outputs import atomic_write_text, is_complete, mark_complete
    from benchmarks.reporting.aggregate import primary_metric
    from evaluators.registry import score_problem

    if changed:
        raise ValueError(f"{changed}; report refuses it (rerun the run to score it again)")
    per_video = pd.read_csv(run / "per_video.csv", keep_default_na=False, na_values={"score": [""]})
    for index, dimension, status, score in per_video[["dimension", "status", "score"]].itertuples():
        problem = score_problem(dimension, score) if status == "ok" else None
        if problem:
            raise ValueError(f"{run / 'per_video.csv'}: line {int(index) + 2}: {problem}")
    per_video["extra"] = per_video["extra"].replace("", "{}")
    summary = pd.read_csv(run / "summary.csv")
    try:
        provenance = json.loads((run / "results.json").read_text()).get("provenance") or {}
    except (OSError, ValueError):
        provenance = {}
    suite = provenance.get("suite") or {}
    primary = primary_metric(summary, suite.get("primary_metric"))
    pareto = (run / "pareto.png").read_bytes() if (run / "pareto.png").is_file() else None
    path = atomic_write_text(run / "report.html", report_html(run, per_video, summary, provenance,
                                                              suite.get("name") or run.name, primary, pareto))
    if is_complete(run):   # the set of files now includes the report
        files = json.loads((run / "COMPLETE").read_text()).get("files", [])
        mark_complete(run, sorted(set(files) | {"report.html"}))
    return path


def cmd_report(args) -> int:
    """(Re)write report.html of a run directory from its files (e.g. a run made before report.html existed)."""
    path = rewrite_report(args.run)
    print(f"wrote {path}")
    return 0
