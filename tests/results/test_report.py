"""The HTML report: built from the run folder alone, numbers equal to the exports, and (CI) the
demo-sized report opened in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hbm.app.cli import main
from hbm.results import io, report_figures
from hbm.results.days_needed import days_needed
from hbm.results.report import confidence_block
from hbm.results.report_html import nested_rows, plain

from ..conftest import REPO

CHROMIUM = os.environ.get("HBM_CHROMIUM", "/usr/bin/chromium")


class _Tables(HTMLParser):
    """Cells of the tables of a page, by table id (the standard library is enough)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._id: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self._id = a["id"]
            self.tables[self._id] = []
        elif tag == "tr" and self._id:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._id:
            self.tables[self._id].append(self._row)
            self._row = None
        elif tag == "table":
            self._id = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def table(page: str, table_id: str) -> pd.DataFrame:
    parser = _Tables()
    parser.feed(page)
    rows = parser.tables[table_id]
    return pd.DataFrame(rows[1:], columns=rows[0])


class _TableParents(HTMLParser):
    """The element (tag, class) that directly holds each table of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str]] = []
        self.parents: dict[str, tuple[str, str]] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.parents[a.get("id") or f"#{len(self.parents)}"] = self.stack[-1]
        if tag not in ("img", "meta", "br"):  # void elements have no end tag
            self.stack.append((tag, a.get("class") or ""))

    def handle_endtag(self, tag):
        if tag not in ("img", "meta", "br"):
            self.stack.pop()


def _body(page: str) -> str:
    """The page less its style sheet and script (the only places braces belong)."""
    return re.sub(r"<style>.*?</style>|<script>.*?</script>", "", page, flags=re.S)


@pytest.fixture(scope="module")
def reported(workspace, tmp_path_factory):
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(workspace[3], run)
    assert main(["report", str(run), "--days-users", "8"]) == 0
    return run


def test_report_is_self_contained_with_every_figure(reported):
    page = (reported / io.REPORT_FILE).read_text()
    assert "http://" not in page and "https://" not in page and 'src="data:image/png' in page
    figures = {
        p.relative_to(reported / "figures").as_posix()
        for p in (reported / "figures").rglob("*.png")
    }
    expected = {"rank.png", "energy.png", "forest.png", "heatmap.png", "confidence_days.png"}
    expected |= {"calibration.png", "ppc_user_rates.png", "days_needed.png"}
    users = pd.read_csv(reported / io.USERS_FILE, dtype={"user_id": str})["user_id"]
    expected |= {f"users/user-{i:04d}.png" for i in range(1, len(users) + 1)}
    assert expected <= figures
    assert page.count('src="data:image/png') == len(expected)
    for u in users:
        assert f'id="user-{u}"' in page and f'<option value="{u}">' in page


def test_report_population_table_equals_population_csv(reported):
    page = (reported / io.REPORT_FILE).read_text()
    shown = table(page, "population-table")
    csv = pd.read_csv(reported / io.POPULATION_FILE)
    assert shown["feature"].tolist() == csv["feature"].tolist()
    numeric = [c for c in shown.columns if c not in ("feature", "group")]
    assert {"mu_mean", "mu_ci_lb", "tau_mean", "p_tau_above_0.3"} <= set(numeric)
    for col in numeric:
        # four decimals on the page: equal to the export up to that rounding
        np.testing.assert_allclose(shown[col].astype(float), csv[col], rtol=0, atol=5e-5)


def test_report_user_and_days_tables_equal_the_exports(reported):
    page = (reported / io.REPORT_FILE).read_text()
    users = pd.read_csv(reported / io.USERS_FILE, dtype={"user_id": str})
    shown = table(page, "users-table")
    assert shown["user_id"].tolist() == users["user_id"].tolist()
    np.testing.assert_allclose(shown["confidence"].astype(float), users["confidence"], atol=5e-4)
    weights = pd.read_csv(reported / io.WEIGHTS_CSV, dtype={"user_id": str})
    uid = users["user_id"].iloc[0]
    w_shown = table(page, f"weights-{uid}")
    w_csv = weights[weights["user_id"] == uid]
    np.testing.assert_allclose(w_shown["ci_ub"].astype(float), w_csv["ci_ub"], atol=5e-4)
    assert w_shown["class"].tolist() == w_csv["class"].tolist()


def test_days_needed_narrows_with_days(workspace):
    tree = io.load_fit(workspace[3] / io.FIT_FILE)
    days = days_needed(tree, days=(0, 30, 365), n_users=10, seed=1)
    width = days["median_ci_width"].to_numpy()
    assert width[0] > width[1] > width[2]
    assert days["confidence"].iloc[0] == pytest.approx(0.0, abs=1e-9)
    assert days["confidence"].iloc[2] > days["confidence"].iloc[1]
    again = days_needed(tree, days=(0, 30, 365), n_users=10, seed=1)
    pd.testing.assert_frame_equal(days, again)


@pytest.mark.ci_stat
def test_demo_sized_report_in_headless_chromium(tmp_path):
    """The shipped example (40 users x 365 days x 19 features), shorter chains, opened in
    Debian's chromium: every image loads, the console stays clean, a screenshot is saved."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} not found: `make browser` installs Debian's chromium (make test does)"
    )
    run = tmp_path / "demo"
    diary = REPO / "data" / "example_diary.csv"
    args = ["--chains", "2", "--tune", "300", "--draws", "300", "--no-progress"]
    assert main(["fit", str(diary), "--out", str(run), *args]) == 0
    t0 = time.perf_counter()
    assert main(["report", str(run)]) == 0
    seconds = time.perf_counter() - t0
    size_mb = (run / io.REPORT_FILE).stat().st_size / 1e6
    print(f"\n[report-demo-sized] {size_mb:.2f} MB in {seconds:.1f} s")
    assert size_mb < 10
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((run / io.REPORT_FILE).as_uri())
        page.wait_for_load_state("load")
        loaded = page.evaluate(
            "() => Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)"
        )
        page.select_option("#user-select", "u020")
        opened = page.evaluate("() => document.getElementById('user-u020').open")
        shot = run / "report_screenshot.png"
        page.screenshot(path=str(shot), full_page=False)
        browser.close()
    print(f"[report-demo-sized] {len(loaded)} images, screenshot {shot}")
    assert len(loaded) >= 48 and all(loaded)
    assert errors == []
    assert opened
    assert shot.stat().st_size > 10_000


def test_report_of_a_no_pooling_run(no_pooling_run):
    assert main(["report", str(no_pooling_run)]) == 0
    page = (no_pooling_run / io.REPORT_FILE).read_text()
    assert "no rank plots" in page and 'id="population-table"' in page
    assert not (no_pooling_run / "figures" / "days_needed.png").exists()


def test_nested_settings_are_one_row_per_key():
    timings = {"compile_s": 1.26, "sampling": {"tune_s": 0.04}}
    assert nested_rows("timings (s)", timings, lambda v: f"{v:.1f}") == [
        ("timings (s): compile_s", "1.3"),
        ("timings (s): sampling: tune_s", "0.0"),
    ]
    assert nested_rows("", {"max_rhat": 1.01, "min_ess_bulk": 400.0}) == [
        ("max_rhat", "1.01"),
        ("min_ess_bulk", "400"),
    ]
    assert nested_rows("centring", {}) == []
    assert nested_rows("seed", 3) == [("seed", "3")]
    assert plain(None) == "not set"
    assert plain(0.0003507165230710224) == "0.0003507"
    assert plain([0.94, 0.93]) == "0.94, 0.93"


def test_report_shows_no_json(reported):
    """Timings, versions, sampler settings, centring and the gate as words, one row per key."""
    page = (reported / io.REPORT_FILE).read_text()
    assert "{" not in _body(page) and "&quot;" not in _body(page)
    parser = _Tables()
    parser.feed(page)
    for rows in parser.tables.values():
        for row in rows:
            for cell in row:
                assert "{" not in cell and not re.search(r'"[^"]*":', cell), cell
    info = json.loads((reported / io.RUN_FILE).read_text())
    shown = dict(map(tuple, parser.tables["run-table"][1:]))
    for key, seconds in info["timings"].items():
        assert shown[f"timings (s): {key}"] == f"{round(seconds, 1):.1f}"
    for key, version in info["versions"].items():
        assert shown[f"versions: {key}"] == version
    # FIT_ARGS: --chains 2 --tune 150 --draws 150 --seed 3
    assert shown["chains x (tune + draws)"] == "2 x (150 + 150)" and shown["seed"] == "3"
    for key, value in info["sampler"].items():
        if key in ("chains", "tune", "draws", "seed"):
            assert f"sampler: {key}" not in shown  # shown once, in the rows above
        else:  # backend, target_accept 0.9, progressbar False, cores null, ...
            expected = f"{value:.4g}" if isinstance(value, float) else str(value)  # 300.0: 300
            assert shown[f"sampler: {key}"] == ("not set" if value is None else expected)
    assert set(info["centring"]) == {
        k.removeprefix("centring: ") for k in shown if "centring: " in k
    }
    gate = json.loads((reported / io.DIAGNOSTICS_FILE).read_text())["gate"]
    assert "Gate: " + ", ".join(f"{key} {value:g}" for key, value in gate.items()) + ";" in page


def test_every_table_scrolls_in_its_own_box(reported):
    page = (reported / io.REPORT_FILE).read_text()
    assert re.search(r"\.scroll\{overflow-x:auto", page)
    parser = _TableParents()
    parser.feed(page)
    # run, diagnostics, population, users, days needed, and one weights table per user (5)
    assert len(parser.parents) == 4 + 1 + 5
    assert set(parser.parents.values()) == {("div", "scroll")}


def test_confidence_is_a_histogram_when_every_user_logged_the_same_days(monkeypatch):
    drawn: list[str] = []
    monkeypatch.setattr(report_figures, "confidence_vs_days", lambda u: drawn.append("scatter"))
    monkeypatch.setattr(report_figures, "confidence_histogram", lambda u, d: drawn.append(d))
    same = pd.DataFrame({"days_logged": [45, 45, 45], "confidence": [0.1, 0.5, 0.9]})
    varied = pd.DataFrame({"days_logged": [30, 60, 90], "confidence": [0.1, 0.5, 0.9]})
    report_figures.confidence_figure(same)
    report_figures.confidence_figure(varied)
    assert drawn == [45, "scatter"]
    message = "Every user logged 45 days, so confidence cannot be plotted against days"
    assert message in confidence_block(same, b"png")
    assert 'alt="confidence distribution"' in confidence_block(same, b"png")
    block = confidence_block(varied, b"png")
    assert "Every user" not in block and 'alt="confidence vs days"' in block


def test_confidence_drawings_are_pngs():
    users = pd.DataFrame({"days_logged": [30, 30, 90], "confidence": [0.0, 0.4, 0.8]})
    for png in (
        report_figures.confidence_vs_days(users),
        report_figures.confidence_histogram(users, 30),
    ):
        assert png.startswith(b"\x89PNG")


def test_report_says_why_confidence_is_not_plotted_against_days(reported):
    """The workspace cohort: 5 users simulated with 60 days each."""
    page = (reported / io.REPORT_FILE).read_text()
    assert "Every user logged 60 days, so confidence cannot be plotted against days" in page
    assert 'alt="confidence distribution" data-name="confidence_days.png"' in page
    assert 'alt="confidence vs days"' not in page


def test_the_gates_second_try_is_said_in_words():
    from hbm.results.report import extension_sentence

    assert extension_sentence(None) == "" and extension_sentence({}) == ""
    said = extension_sentence(
        {
            "why": ["max R-hat 1.012 > 1.01 (worst: tau)", "min tail ESS 381 < 400 (worst: tau)"],
            "tune": 600,
            "draws": 2000,
            "seed": 2027,
            "target_accept": 0.95,
            "sampling_s": 27.4,
            "budget_s": 300.0,
        }
    )
    assert said == (
        '<p id="extension">The first sampling failed the gate (max R-hat 1.012 &gt; 1.01 '
        "(worst: tau); min tail ESS 381 &lt; 400 (worst: tau)), so the fit was sampled again with "
        "600 warm-up and 2000 draws per chain and target acceptance 0.95 (seed 2027, 27 s, "
        "within its budget of 300 s); "
        "these are its draws.</p>"
    )
