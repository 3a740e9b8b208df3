"""report.html / compare.html: written with the run's files, self-contained, and working in headless Chromium."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.compare import CompareOptions, run_compare
from benchmarks.reporting.report_html import PREVIEW_SIZE, preview_name
from benchmarks.reporting.writers import summarize, write_results
from benchmarks.run.suites import WORLD_SUITE_SEED
from evaluators.video import read_video, write_video
from m4v.world.captions import prompt_suite

MODELS = ("m4v-tiny", "dit-tiny", "m4v-tiny-reward")
INSTALL = "apt-get install -y chromium chromium-driver && pip install -e '.[test]'"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def make_run(out: Path, shift: float = 0.0, seed: int = 0) -> Path:
    """A run directory written by write_results: the world suite's 8 prompts (one per kind), 3 models, a real
    64x64 scored video per (model, prompt) in the scored format, clip_score on every prompt, world_count on the
    counting prompts only, world_colour_shape 0/1; `shift` lowers m4v-tiny's clip_score."""
    rng = np.random.default_rng(seed)
    entries = prompt_suite(1, seed=WORLD_SUITE_SEED, n_frames=8)
    rows, generation = [], []
    for model in MODELS:
        for entry in entries:
            prompt = entry["prompt_en"]
            video = f"videos/{model}/{prompt}-0.mp4"
            frames = np.zeros((8, 64, 64, 3), np.uint8)
            frames[..., MODELS.index(model)] = rng.integers(60, 255)
            for t in range(8):   # a square that moves: frames differ, the loop is visible
                frames[t, 20:36, 4 + 6 * t:20 + 6 * t] = 255
            write_video(out / video, frames)
            scores = {"clip_score": rng.normal(60, 5) - (shift if model == "m4v-tiny" else 0.0),
                      "world_colour_shape": float(rng.random() < 0.5)}
            if "world_count" in entry["dimension"] or entry["world_kind"] == "multiple_objects":
                scores["world_count"] = float(rng.random() < 0.7)
            for dim, score in scores.items():
                rows.append({"model": model, "prompt": prompt, "seed": 0, "sample": 0, "dimension": dim,
                             "score": score, "status": "ok", "reason": "", "backbone": "none", "faithful": False,
                             "n_frames": 8, "video": video, "extra": "{}"})
            generation.append({"model": model, "prompt": prompt, "seed": 0, "sample": 0, "batch_index": 0,
                               "video": video, "tflops": 0.01 * (1 + MODELS.index(model)),
                               "mixer_tflops": 0.005 * (1 + MODELS.index(model)), "seconds": 1.0, "peak_mb": 10.0})
    per_video, generation = pd.DataFrame(rows), pd.DataFrame(generation)
    summary = summarize(per_video, generation, list(MODELS))
    suite = {"name": "html-test", "prompts": "world", "per_kind": 1, "samples": 1, "sampling": {"frames": 8},
             "models": list(MODELS)}
    provenance = {"command": "test", "git_commit": "abc", "suite": suite, "suite_hash": "h", "versions": {},
                  "device": {}, "checkpoints": {}}
    write_results(out, per_video, generation, summary, provenance, "html-test", "clip_score")
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run"))


def test_report_is_written_with_the_run_listed_in_complete_and_self_contained(run_dir):
    """report.html beside the tables, in COMPLETE; nothing fetched from the network; videos by relative path."""
    assert "report.html" in json.loads((run_dir / "COMPLETE").read_text())["files"]
    text = (run_dir / "report.html").read_text()
    assert "http://" not in text and "https://" not in text and "<link rel=\"stylesheet\"" not in text
    assert 'src="data:image/png;base64,' in text   # the Pareto plot inline
    assert text.count("<video ") == len(MODELS) * 8
    assert "## How many prompts" in (run_dir / "report.md").read_text()
    assert not list(run_dir.glob("**/.*.tmp")) and not list(run_dir.glob("**/*.partial.mp4"))


def test_previews_play_in_browsers_and_keep_the_scored_files(run_dir):
    """The scored mp4 stays H.264 yuv444p; its preview is yuv420p, even-sized, upscaled by nearest neighbour."""
    import av

    video = f"videos/{MODELS[0]}/{prompt_suite(1, seed=WORLD_SUITE_SEED)[0]['prompt_en']}-0.mp4"
    preview = run_dir / preview_name(video)
    with av.open(str(run_dir / video)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv444p"
    with av.open(str(preview)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert stream.codec_context.width % 2 == 0 and stream.codec_context.height % 2 == 0
    source, shown = read_video(run_dir / video).frames, read_video(preview).frames
    k = shown.shape[1] // source.shape[1]
    assert k * 64 >= PREVIEW_SIZE and shown.shape[:3] == (8, 64 * k, 64 * k)
    # nearest neighbour: each k x k block is one source pixel (up to the preview's lossy coding)
    blocks = shown.reshape(8, 64, k, 64, k, 3).astype(float)
    assert np.abs(blocks.mean(axis=(2, 4)) - source).mean() < 6
    assert blocks.std(axis=(2, 4)).mean() < 4


def _browser():
    """Headless Debian Chromium through selenium (the system driver: nothing downloaded), or skip."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip(f"selenium is not installed: {INSTALL}")
    driver_path = CHROMEDRIVER if os.access(CHROMEDRIVER, os.X_OK) else shutil.which("chromedriver")
    if not os.access(CHROMIUM, os.X_OK) or not driver_path:
        pytest.skip(f"no Chromium at {CHROMIUM} or no chromedriver: {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1600", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)   # no background networking: the machine has no network to reach
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)   # a given driver: no Selenium Manager
    driver.set_page_load_timeout(60)
    return driver


def _wait_for_videos(driver, timeout: float = 30.0) -> list[int]:
    """readyState of every <video> once all are >= 2 (a decodable current frame), or at the timeout."""
    from selenium.webdriver.support.ui import WebDriverWait

    script = "return [...document.querySelectorAll('video')].map(v => v.readyState)"
    try:
        WebDriverWait(driver, timeout).until(lambda d: all(s >= 2 for s in d.execute_script(script)))
    except Exception:   # the assertion below says which were not ready
        pass
    return driver.execute_script(script)


def _visible_prompts(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('#gallery > tbody > tr')].filter(r => !r.hidden)"
                                 ".map(r => r.cells[0].firstChild.textContent)")


def _choose(driver, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", element_id)).select_by_value(value)


def _errors(driver) -> list:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_report_html_in_headless_chromium(run_dir, tmp_path):
    """Every video decodes, the gallery is models x prompts, sorting and filtering reorder it, no console error."""
    driver = _browser()
    try:
        driver.get((run_dir / "report.html").as_uri())
        states = _wait_for_videos(driver)
        assert len(states) == len(MODELS) * 8 and all(s >= 2 for s in states), states
        cells = driver.find_elements("css selector", "#gallery td.cell")
        assert len(cells) == len(MODELS) * 8
        per_video = pd.read_csv(run_dir / "per_video.csv")
        prompts = list(dict.fromkeys(per_video["prompt"]))
        assert _visible_prompts(driver) == prompts
        # sort by the largest |A - B| on clip_score: the order computed here from per_video.csv
        clip = per_video[per_video["dimension"] == "clip_score"].pivot(index="prompt", columns="model", values="score")
        gap = (clip[MODELS[0]] - clip[MODELS[2]]).abs()
        _choose(driver, "s-metric", "clip_score")
        _choose(driver, "s-a", MODELS[0])
        _choose(driver, "s-b", MODELS[2])
        _choose(driver, "s-mode", "diff")
        assert _visible_prompts(driver) == list(gap.sort_values(ascending=False).index)
        assert _visible_prompts(driver) != prompts
        # by one model's score, low first
        _choose(driver, "s-mode", "metric")
        _choose(driver, "s-model", MODELS[1])
        _choose(driver, "s-order", "asc")
        assert _visible_prompts(driver) == list(clip[MODELS[1]].sort_values().index)
        # filters: a prompt kind, then a dimension (the prompts scored on it)
        kinds = {e["prompt_en"]: e["world_kind"] for e in prompt_suite(1, seed=WORLD_SUITE_SEED)}
        _choose(driver, "f-kind", "color")
        assert _visible_prompts(driver) == [p for p in clip[MODELS[1]].sort_values().index if kinds[p] == "color"]
        _choose(driver, "f-kind", "")
        _choose(driver, "f-dim", "world_count")
        counted = set(per_video[per_video["dimension"] == "world_count"]["prompt"])
        assert set(_visible_prompts(driver)) == counted and 0 < len(counted) < 8
        # the summary table sorts its models by a clicked column
        summary = pd.read_csv(run_dir / "summary.csv")
        header = driver.find_element("xpath", "//table[@id='summary']//th[starts-with(normalize-space(.), "
                                              "'clip_score')]")
        header.click()
        order = driver.execute_script("return [...document.querySelectorAll('#summary > tbody > tr')].map(r => "
                                      "r.cells[0].textContent)")
        assert order == list(summary.sort_values("clip_score", ascending=False)["model"])
        _choose(driver, "f-dim", "")
        driver.execute_script("document.getElementById('gallery-title').scrollIntoView()")
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        assert _errors(driver) == []
    finally:
        driver.quit()


def test_compare_html_shows_the_largest_drops_side_by_side(tmp_path, capsys):
    """A regression in clip_score: compare.html lists it with base and new videos of its worst prompts, playable;
    a metric it cannot resolve says below what."""
    # another draw for NEW: its unregressed metrics vary against BASE's (a spread to state a resolution from)
    base, new = make_run(tmp_path / "base"), make_run(tmp_path / "new", shift=30.0, seed=1)
    code = run_compare(base, new, CompareOptions(pairs=[(MODELS[0], MODELS[0])], n_resamples=200), out=new)
    assert code == 1
    text = (new / "compare.html").read_text()
    assert "Regressed metrics: 1" in text and "cannot resolve differences below" in text
    assert text.count("<video ") == 2 * 6   # 6 prompts with the largest drops, base and new
    assert "https://" not in text and "http://" not in text
    driver = _browser()
    try:
        driver.get((new / "compare.html").as_uri())
        states = _wait_for_videos(driver)
        assert len(states) == 12 and all(s >= 2 for s in states), states
        assert _errors(driver) == []
        driver.save_screenshot(str(tmp_path / "compare.png"))
    finally:
        driver.quit()


def test_report_command_rewrites_a_committed_run_without_videos(run_dir, tmp_path, capsys):
    """`m4v-bench report RUN` on a run whose videos are gone: the page with 'no video' cells, COMPLETE kept."""
    from benchmarks import cli

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("videos", "previews", "report.html"))
    assert cli.main(["report", str(copy)]) == 0
    text = (copy / "report.html").read_text()
    assert "<video " not in text and text.count("no video in this folder") == len(MODELS) * 8
    assert "report.html" in json.loads((copy / "COMPLETE").read_text())["files"]
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 2
    assert "per_video.csv" in capsys.readouterr().err
