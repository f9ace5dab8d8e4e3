"""The Snakemake report of the micro run, opened in a real browser (headless Chromium)
and clicked through as a user does: every experiment, every subcategory, every result
listed, every figure shown, and the summary tables offered for download.

Snakemake 9's report.html is a React single-page app with its results embedded as
data: URIs. It keeps its view in the app's state, not in the URL, so there is no
address to open a category at: the test clicks its way there, with mouse events at
the place a link is drawn, through the DevTools protocol over a pipe
(``--remote-debugging-pipe``: null-terminated JSON on fds 3 and 4), which needs
nothing beyond the standard library. The page, as the report draws it:

    menu        General: Workflow, Statistics, About; Results: one link per category
                ("Base model", then the experiments)
    category    one link per subcategory: Forgetting, Samples, Sign conflicts, Tables
    subcategory a table, one row per result: its path, an eye button (figures: shows
                the image beside the menu; other files: a download link to the data:
                URI) and an info button (the result's caption, size, rule)

Needs Chromium (Debian: ``apt-get install -y chromium``); skipped without it.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from continual_lora import layout

CONFIGS = Path(__file__).parent / "configs"
REPORT_CAPTIONS = Path(__file__).resolve().parents[1] / "workflow" / "report"

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Seconds for one answer of the browser (a command, or a page state waited for).
TIMEOUT = 30
# How long a click may take to show its effect before it is made again.
CLICK_PATIENCE = 5
WINDOW = (1600, 1000)
# The subcategories of an experiment (workflow/rules/aggregation.smk) and the figure
# set whose PNGs each lists; Tables lists the summary.
FIGURE_SETS = {"Forgetting": "scores", "Samples": "samples", "Sign conflicts": "sign_conflicts"}
# Beyond the paper (workflow/rules/beyond_paper.smk), where the config turns them on:
# config key -> (subcategory, figure folder, table, caption of both).
BEYOND = {
    "retention": ("Retention", layout.RETENTION_FIGURES, layout.RETENTION_TABLE, "retention.rst"),
    "composition": ("Composition", layout.COMPOSITION_FIGURES, layout.COMPOSITION_TABLE, "composition.rst"),
}


@pytest.fixture(scope="session")
def chromium():
    """Chromium's executable; the test skips without one. Session-scoped and named
    before micro_run, so that pytest skips before it runs the workflow for nothing."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"no Chromium to render the report ({', '.join(BROWSERS)} not on PATH); Debian: apt-get install -y chromium")


class Chromium:
    """A headless Chromium with one page, driven through the DevTools protocol over a
    pipe. Its processes run in a session of their own, but for its crash handlers, which
    start sessions of their own: $HOME is ``workdir`` (their database goes there), which
    names them. ``close`` ends them all. (``--disable-crashpad-for-testing`` would start
    none, but makes Chromium 150's network service crash over and over.)"""

    FLAGS = (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--remote-debugging-pipe",
    )

    def __init__(self, executable: str, workdir: Path):
        self.workdir = workdir
        (workdir / "profile").mkdir()
        self.log = workdir / "chromium.log"
        commands_in, self.commands = os.pipe()
        self.answers, answers_out = os.pipe()
        # Chromium reads the pipe on fd 3 and writes on fd 4: bash moves the ends there
        # from fds of 10 and above, which clash with neither.
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (commands_in, answers_out)]
        os.close(commands_in)
        os.close(answers_out)
        flags = [*self.FLAGS, f"--user-data-dir={workdir / 'profile'}", f"--window-size={WINDOW[0]},{WINDOW[1]}", "about:blank"]
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                ["bash", "-c", f'exec "$0" "$@" 3<&{ends[0]} 4>&{ends[1]} {ends[0]}<&- {ends[1]}>&-', executable, *flags],
                pass_fds=ends,
                start_new_session=True,
                env={**os.environ, "HOME": str(workdir)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        for fd in ends:
            os.close(fd)
        self.buffer = b""
        self.last_id = 0
        self.session = None
        try:
            page = next(t for t in self.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
            self.session = self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
            self.send("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1], deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    def crash_handlers(self) -> list[int]:
        """The crash handlers of this browser still running: the processes whose command
        line names ``workdir`` outside the browser's process group."""
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if str(self.workdir).encode() in (proc / "cmdline").read_bytes() and os.getpgid(int(proc.name)) != self.process.pid:
                    found.append(int(proc.name))
            except (OSError, ProcessLookupError):
                pass
        return found

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, method: str, **params):
        """One command (to the page once attached); its result."""
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        if self.session is not None:
            message["sessionId"] = self.session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:  # events come in between; they are not needed
            answer = self._receive(deadline)
            if answer.get("id") == self.last_id:
                if "error" in answer:
                    raise RuntimeError(f"Chromium: {method}: {answer['error']}")
                return answer["result"]

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.answers], [], [], left)[0]:
                raise TimeoutError(f"no answer from Chromium in {TIMEOUT} s; its log: {self.log}")
            chunk = os.read(self.answers, 1 << 20)
            if not chunk:
                raise EOFError(f"Chromium closed the pipe; its log:\n{self.log.read_text(errors='replace')[-3000:]}")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = TIMEOUT):
        """The first truthy value of ``expression``, polled; an exception (the page not
        drawn yet) counts as false."""
        value = self._poll(expression, timeout)
        if not value:
            raise AssertionError(f"the report did not show {what} within {timeout} s")
        return value

    def _poll(self, expression: str, timeout: float):
        expression = f"(async () => {{ try {{ return await ({expression}); }} catch (error) {{ return null; }} }})()"
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() >= deadline:
                return value
            time.sleep(0.05)

    def click(self, element: str, what: str, shows: str | None = None):
        """A left click, as a mouse makes it, at the middle of the element that the
        JavaScript expression ``element`` finds, once it is drawn and not covered.
        The report's stylesheet is made by a script as the page renders, so the layout
        moves at first: the place is taken when it holds still for two frames.

        With ``shows`` (a JavaScript expression), the click is made again while the
        element is still there and ``shows`` is not true: on a loaded machine the page
        can redraw the element between the press and the release, and a person whose
        click did nothing clicks again. Showing what the click shows is still required
        within the timeout."""
        shown = None if shows is None else f"!!({shows})"  # a boolean: an element cannot be returned by value
        deadline = time.monotonic() + TIMEOUT
        while True:
            self._click_once(element, what)
            if shown is None or self._poll(shown, CLICK_PATIENCE):
                return
            left = deadline - time.monotonic()
            if left <= 0 or not self._poll(f"!!({element})", 0):
                self.wait_for(shown, f"what {what} shows", max(left, 0))
                return

    def _click_once(self, element: str, what: str):
        locate = f"""new Promise(done => {{
            const element = {element};
            if (!element) return done(null);
            element.scrollIntoView({{block: "nearest", inline: "nearest"}});
            const before = element.getBoundingClientRect();
            requestAnimationFrame(() => requestAnimationFrame(() => {{
                const box = element.getBoundingClientRect();
                const x = box.x + box.width / 2, y = box.y + box.height / 2;
                done({{x, y, ready: box.width > 0 && box.height > 0 && box.x === before.x && box.y === before.y
                    && element.contains(document.elementFromPoint(x, y))}});
            }}));
        }})"""
        spot = self.wait_for(f"{locate}.then(spot => spot && spot.ready && spot)", f"{what} to click")
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=spot["x"], y=spot["y"])
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=spot["x"], y=spot["y"], button="left", clickCount=1)

    def screenshot(self, path: Path) -> Image.Image:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))
        return Image.open(path).convert("RGB")

    def close(self):
        """Ask the browser to quit; whatever of its session is left is killed."""
        try:
            if self.process.poll() is None:
                self.session = None
                self.send("Browser.close")
                self.process.wait(timeout=10)
        except (OSError, EOFError, TimeoutError, RuntimeError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # its renderers, GPU process...
        except ProcessLookupError:
            pass
        self.process.wait()
        for pid in self.crash_handlers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.close(self.commands)
        os.close(self.answers)


# JavaScript that finds things in the menu column (the report's <nav>).
NAV = "document.querySelector('#app nav')"


def nav_link(text: str) -> str:
    """The link of the menu column (menu item, breadcrumb) that reads ``text``."""
    return f"[...{NAV}.querySelectorAll('a')].find(a => a.innerText.trim() === {json.dumps(text)})"


def row_button(path: str, icon: str) -> str:
    """A button of the result row of ``path``: "eye" (view) or "information-circle"."""
    row = f"[...{NAV}.querySelectorAll('tbody tr')].find(r => r.cells[0].innerText.trim() === {json.dumps(path)})"
    return f"({row})?.querySelector('a[iconname={json.dumps(icon)}]')"


# JavaScript: the first row of the results table of the menu column, once it is shown.
RESULTS_SHOWN = f"{NAV}.querySelector('tbody tr')"
# JavaScript: the links of the menu column, below its breadcrumbs.
MENU_ITEMS = f"[...{NAV}.querySelectorAll(':scope > div > div > ul > li > a')].map(a => a.innerText.trim())"


def menu_shows(item: str) -> str:
    """JavaScript: whether the menu column lists ``item`` (what a click into a menu shows)."""
    return f"{MENU_ITEMS}.includes({json.dumps(item)})"


def listed_results(browser: Chromium, what: str) -> list[str]:
    """The paths in the results table of the menu column."""
    return browser.wait_for(
        f"{RESULTS_SHOWN} && [...{NAV}.querySelectorAll('tbody tr')].map(r => r.cells[0].innerText.trim())",
        what,
    )


def menu_items(browser: Chromium, what: str, expected: str) -> list[str]:
    """The links of the menu column, below its breadcrumbs, once ``expected`` is one."""
    return browser.wait_for(f"{menu_shows(expected)} && {MENU_ITEMS}", what)


# The image the report shows beside the menu: waited for until it is the result asked
# for and decoded; its source, drawn size and natural size.
SHOWN_IMAGE = """(async () => {{
    const image = [...document.querySelectorAll('#app img')].find(i => !i.closest('nav'));
    if (!image || !image.src.includes(';filename={name};')) return null;
    await image.decode();
    const box = image.getBoundingClientRect();
    return {{src: image.src, natural: [image.naturalWidth, image.naturalHeight],
             box: [box.x, box.y, box.width, box.height]}};
}})().catch(() => null)"""


# Whether the image beside the menu is the result asked for: synchronous, as the
# ``shows`` of a click must be (a promise would count as true).
SHOWN_SOURCE = "[...document.querySelectorAll('#app img')].find(i => !i.closest('nav'))?.src.includes(';filename={name};')"


def data_uri_bytes(uri: str, mime: str) -> bytes:
    header, data = uri.split(",", 1)
    assert header.startswith(f"data:{mime};") and header.endswith(";base64"), header
    return base64.b64decode(data)


def show_figure(browser: Chromium, workdir: Path, path: str) -> dict:
    """Click the eye button of ``path`` (again, if the click did nothing: see
    ``Chromium.click``); the image shown, checked against the file."""
    browser.click(row_button(path, "eye"), f"the view button of {path}", shows=SHOWN_SOURCE.format(name=Path(path).name))
    shown = browser.wait_for(SHOWN_IMAGE.format(name=Path(path).name), f"the figure {path}")
    on_disk = (workdir / path).read_bytes()
    assert data_uri_bytes(shown["src"], "image/png") == on_disk, f"{path}: the report shows other bytes than the file"
    assert shown["natural"] == list(Image.open(io.BytesIO(on_disk)).size), path
    assert shown["box"][2] > 100 and shown["box"][3] > 100, f"{path} is drawn {shown['box'][2:]} px"
    return shown


def expected_results(config: dict, workdir: Path) -> dict[str, dict[str, list[str]]]:
    """Category -> subcategory -> the result paths listed (sorted). The base model is
    the tiny one (base_model: tiny), whose sample grid is a category of its own, with
    the one subcategory that Snakemake names "Other" and skips when clicked through."""
    categories = {"Base model": {"Other": [layout.path(layout.TINY_SAMPLES, model=config.get("tiny_model", {}).get("name", "tiny"))]}}
    for name in config["experiments"]:
        experiment = {"Tables": [layout.SUMMARY.format(experiment=name)]}
        folders = {sub: layout.FIGURES.format(experiment=name, figure_set=s) for sub, s in FIGURE_SETS.items()}
        for key, (subcategory, folder, table, _) in BEYOND.items():
            if config.get(key, {}).get("enabled"):
                folders[subcategory] = folder.format(experiment=name)
                experiment["Tables"].append(table.format(experiment=name))
        experiment["Tables"].sort()
        for subcategory, folder in folders.items():
            experiment[subcategory] = sorted(f"{folder}/{png.name}" for png in (workdir / folder).glob("*.png"))
        categories[name] = experiment
    return categories


def names_a_user_looks_for(config: dict, name: str) -> dict[str, set[str]]:
    """Per subcategory, the file names the config asks for (as test_workflow checks on disk)."""
    spec, methods = config["experiments"][name], config["methods"]
    n_templates = min(2, len(config["evaluation"]["templates"][spec["domain"]]))
    beyond = {}
    if config.get("retention", {}).get("enabled"):
        beyond["Retention"] = {f"retention_{metric}.png" for metric in spec["metrics"] if metric != "denoise"}
        beyond["Retention"].add("retention_samples.png")
    if config.get("composition", {}).get("enabled"):
        templates = config["composition"]["templates"][spec["domain"]]
        beyond["Composition"] = {f"composition_template{t}.png" for t in range(len(templates))}
    return beyond | {
        "Tables": {"summary.csv"} | {f"{key}.csv" for key in BEYOND if config.get(key, {}).get("enabled")},
        "Forgetting": {f"heatmap_{metric}_{method}.png" for metric in spec["metrics"] for method in methods}
        | {f"heatmaps_{metric}.png" for metric in spec["metrics"]}
        | {f"first_task_{metric}.png" for metric in spec["metrics"]}
        | {f"plasticity_forgetting_{metric}.png" for metric in spec["metrics"]},
        "Samples": {f"{kind}_template{t}.png" for kind in ("samples", "right_after") for t in range(n_templates)},
        "Sign conflicts": {f"{kind}_{method}.png" for kind in ("sign_conflicts", "norm_ratio") for method in methods},
    }


def caption_text(name: str) -> str:
    """The first sentence-start of a caption file, as the report renders it (one line)."""
    return " ".join((REPORT_CAPTIONS / name).read_text().split())[:60]


def test_report_in_a_browser_lists_every_result_and_shows_every_figure(chromium, micro_run, micro_report, tmp_path):
    config = yaml.safe_load((CONFIGS / "micro.yaml").read_text())
    report = micro_report
    expected = expected_results(config, micro_run)

    with Chromium(chromium, tmp_path) as browser:
        browser.send("Page.navigate", url=report.as_uri())
        menu = menu_items(browser, "its menu", "Workflow")
        assert menu[:3] == ["Workflow", "Statistics", "About"] and sorted(menu[3:]) == sorted(expected), menu

        for category, subcategories in expected.items():
            # Every click of the walk is made again if it did nothing (see Chromium.click):
            # CI lost a click into a subcategory once, on a loaded machine.
            opens = menu_shows("Tables") if len(subcategories) > 1 else RESULTS_SHOWN
            browser.click(nav_link(category), f"the category {category}", shows=opens)
            if len(subcategories) > 1:
                listed = menu_items(browser, f"the subcategories of {category}", "Tables")
                assert sorted(listed) == sorted(subcategories), (category, listed)
            for subcategory, paths in subcategories.items():
                if len(subcategories) > 1:
                    browser.click(nav_link(subcategory), f"the subcategory {category} / {subcategory}", shows=RESULTS_SHOWN)
                listed = listed_results(browser, f"the results of {category} / {subcategory}")
                assert sorted(listed) == paths, (category, subcategory, listed)
                if category in config["experiments"]:
                    looked_for = names_a_user_looks_for(config, category)[subcategory]
                    assert looked_for <= {Path(p).name for p in listed}, (category, subcategory, listed)
                if subcategory == "Tables":
                    # A CSV is offered for download, its data embedded, with its caption.
                    captions = {Path(table).name: caption for _, _, table, caption in BEYOND.values()}
                    for path in paths:
                        link = browser.wait_for(f"{row_button(path, 'eye')}?.getAttribute('href')", f"the download link of {path}")
                        assert data_uri_bytes(link, "text/csv") == (micro_run / path).read_bytes(), path
                        caption = captions.get(Path(path).name, "summary.rst")
                        shows_caption = f"{NAV}.innerText.includes({json.dumps(caption_text(caption))})"
                        browser.click(row_button(path, "information-circle"), f"the info button of {path}", shows=shows_caption)
                        browser.click(nav_link(subcategory), f"the breadcrumb {subcategory}", shows=row_button(path, "eye"))
                        listed_results(browser, f"the results of {category} / {subcategory} again")
                else:
                    for path in paths:
                        show_figure(browser, micro_run, path)
                if len(subcategories) > 1:
                    browser.click(nav_link(category), f"the breadcrumb {category}", shows=menu_shows("Tables"))
                    menu_items(browser, f"the subcategories of {category} again", "Tables")
            browser.click(nav_link("Results"), "the breadcrumb Results", shows=menu_shows("Workflow"))
            menu_items(browser, "the menu again", "Workflow")

        # A last look at the screen, as a user sees it: a heatmap beside the table of
        # figures, drawn pixel for pixel as in the file (the screenshot: report.png).
        name = next(iter(config["experiments"]))
        heatmap = next(p for p in expected[name]["Forgetting"] if "/heatmap_" in p)
        browser.click(nav_link(name), f"the category {name}", shows=menu_shows("Forgetting"))
        browser.click(nav_link("Forgetting"), f"the subcategory {name} / Forgetting", shows=RESULTS_SHOWN)
        shown = show_figure(browser, micro_run, heatmap)
        screen = np.asarray(browser.screenshot(tmp_path / "report.png"), dtype=float)

    assert screen.shape[:2] == (WINDOW[1], WINDOW[0])
    x, y, width, height = (round(v) for v in shown["box"])
    assert x >= 0 and y >= 0 and x + width <= WINDOW[0] and y + height <= WINDOW[1], f"the heatmap is drawn off the screen: {shown['box']}"
    figure = Image.open(micro_run / heatmap).convert("RGBA")
    white = Image.new("RGBA", figure.size, "white")
    figure = np.asarray(Image.alpha_composite(white, figure).convert("RGB").resize((width, height)), dtype=float)
    drawn = screen[y : y + height, x : x + width]
    assert np.abs(drawn - figure).mean() < 3, "the screen does not show the heatmap where the report draws it"
    assert drawn.std() > 20, "the heatmap is drawn blank"
    menu_column = screen[:, : x - 1]
    assert menu_column.std() > 20, "the menu column is blank"
