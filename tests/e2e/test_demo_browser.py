"""`make demo` as a newcomer meets it, checked in a real browser (Debian's chromium, headless).

The demo runs as ``make demo`` runs it (``python -m labelbridge.tools.demo``, its own Label
Studio from the same harness, labelbridge on the demo export, the media server), on free ports
and a temporary data dir. For each project it prints, the browser logs in, opens the printed
URL, and reads from the page what a person sees: the Regions list, and for each region the
Info panel's ID and label, which must be the Labelbox feature id and name of the demo export.
A failure leaves a screenshot in ``var/test-artifacts/browser/`` (README, Development).

Another kind of task joins with one ``Case`` (brush masks: ``brushregion``; video tracks:
``videorectangleregion``, the video played from the media server) and its project in
``configs/demo/demo.yaml``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from labelbridge.tools.demo.__main__ import READY
from labelbridge.tools.localls import LS_EMAIL, LS_PASSWORD
from labelbridge.tools.localls.procs import free_port, port_in_use, stop_process
from tests.e2e.browser import BrowserError, Chromium, Page, login
from tests.helpers import DEMO_EXPORT, ROOT

ARTIFACTS = ROOT / "var" / "test-artifacts" / "browser"


@dataclass(frozen=True)
class Case:
    project: str        # a title in configs/demo/demo.yaml
    region_type: str    # the editor's region type (class lsf-tree__node_type_<type>)
    regions: int        # how many the demo export's data row has for this config
    images: int = 1     # images the task shows, loaded from the demo's media server
    videos: int = 0     # videos it plays from there (a first frame decoded)


CASES = [
    Case("Demo: image detection", "rectangleregion", 3),
    Case("Demo: polygons", "polygonregion", 1),
    Case("Demo: keypoints", "keypointregion", 1),   # drawn only with value.width (kinds.py)
    Case("Demo: named entities", "richtextregion", 4, images=0),
    Case("Demo: masks", "brushregion", 4),
    Case("Demo: video", "videorectangleregion", 3, images=0, videos=1),   # one per track
]


def export_features() -> dict[str, str]:
    """feature id -> name of every object in the demo export's predictions."""
    out: dict[str, str] = {}
    for line in DEMO_EXPORT.read_text().splitlines():
        text = json.dumps(json.loads(line))
        for m in re.finditer(r'"feature_id": "(\w+)", "feature_schema_id": "\w+", "name": '
                             r'"([^"]+)"', text):
            out[m.group(1)] = m.group(2)
    return out


class Demo:
    """``python -m labelbridge.tools.demo`` in its own process group, stdout read as it comes."""

    def __init__(self, data_dir: Path, ports: dict[str, int]) -> None:
        self.args = [sys.executable, "-m", "labelbridge.tools.demo", "--data-dir", str(data_dir),
                     *[x for k, v in ports.items() for x in (f"--{k}", str(v))]]
        self.lines: list[str] = []
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                     env={**os.environ, "COLUMNS": "80"})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY in self.lines:
                return "\n".join(self.lines)
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError("the demo did not come up:\n" + "\n".join(self.lines))

    def urls(self) -> dict[str, str]:
        """project title -> the task URL printed under it."""
        out, title = {}, None
        for line in self.lines:
            if m := re.match(r"  (Demo: [^:]+): ", line):
                title = m.group(1)
            elif (m := re.match(r"    open (http://\S+)$", line)) and title:
                out[title] = m.group(1)
        return out

    def interrupt(self) -> int:
        """Ctrl-C: the demo stops what it started and exits 0."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(60)
        finally:
            stop_process(self.proc)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data = tmp_path_factory.mktemp("demo")
    ports = {"ls-port": free_port(), "port": free_port(), "media-port": free_port()}
    run = Demo(data, ports)
    try:
        run.wait_ready()
        yield run, data, ports
    finally:
        if run.proc.poll() is None:
            run.interrupt()


@pytest.fixture(scope="module")
def page(demo, tmp_path_factory):
    run, _, _ = demo
    ls_url = re.search(r"Label Studio  (http://\S+)", "\n".join(run.lines)).group(1)
    with Chromium(tmp_path_factory.mktemp("chromium")) as browser:
        page = browser.page()
        login(page, ls_url, LS_EMAIL, LS_PASSWORD)
        yield page
        page.close()


def shown_regions(page: Page, region_type: str) -> list[tuple[str, str]]:
    """Click each region of the Regions list; (ID, label) as the Info panel shows them."""
    rows = f".lsf-tree__node_type_{region_type} .lsf-tree-node-content-wrapper"
    listed = page.evaluate(f"[...document.querySelectorAll({json.dumps(rows)})]"
                           ".map(e => e.innerText.split('\\n')[0].trim())")   # "1", "2", ...
    seen = []
    for i, number in enumerate(listed):
        info = None
        for _attempt in range(3):   # a click while the editor still lays out can be lost
            x, y = page.evaluate(f"""(() => {{ const r = document.querySelectorAll(
                {json.dumps(rows)})[{i}].getBoundingClientRect();
                return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
            page.click(x, y)
            # the Info panel of region <number>: "<number>", label, ID, per-region answers ...
            with contextlib.suppress(BrowserError):
                info = page.wait_for(
                    "(() => { const t = document.querySelector('.lsf-info')?.innerText?.trim();"
                    f" return t && t.split('\\n')[0].trim() === {json.dumps(number)} ? t : null"
                    " })()", 4, what=f"the Info panel of region {number}")
                break
        assert info, f"clicking region {number} of the Regions list shows no Info"
        info_lines = [line.strip() for line in info.split("\n") if line.strip()]
        seen.append((info_lines[2], info_lines[1]))
    return seen


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.project)
def test_the_printed_url_shows_the_labelbox_predictions(demo, page, case, request):
    run, _, _ = demo
    url = run.urls().get(case.project)
    media_url = re.search(r"demo media    (http://\S+)", "\n".join(run.lines)).group(1)
    assert url, f"no URL printed for {case.project}:\n" + "\n".join(run.lines)
    features = export_features()
    try:
        page.navigate(url)
        rows = f".lsf-tree__node_type_{case.region_type} .lsf-tree-node-content-wrapper"
        media = f"[...document.images].filter(i => i.src.startsWith('{media_url}'))"
        videos = (f"[...document.querySelectorAll('video')].filter(v => "
                  f"v.currentSrc.startsWith('{media_url}'))")
        page.wait_for(f"document.querySelectorAll('{rows}').length >= {case.regions} && "
                      f"{media}.length >= {case.images} && "
                      f"{media}.every(i => i.complete && i.naturalWidth > 0) && "
                      f"{videos}.length >= {case.videos} && "
                      f"{videos}.every(v => v.readyState >= 2 && v.videoWidth > 0) && "
                      f"[...document.querySelectorAll('{rows}')].map(e => e.innerText).join()",
                      60, settle=1.5,
                      what=f"{case.regions} {case.region_type}(s) in the Regions list, "
                      f"{case.images} image(s) and {case.videos} video(s) from the demo's "
                      "media server")
        listed = page.evaluate(f"[...document.querySelectorAll('{rows}')].map(e => e.innerText)")
        shown = shown_regions(page, case.region_type)
        assert len(shown) == len(listed) == case.regions, (listed, shown)
        for feature_id, label in shown:
            assert feature_id in features, f"{feature_id} is not a Labelbox feature id"
            assert label.lower() == features[feature_id].lower(), (feature_id, label)
        assert len({f for f, _ in shown}) == len(shown)
    except BaseException:
        name = re.sub(r"\W+", "-", request.node.name).strip("-")
        path = page.screenshot(ARTIFACTS / f"{name}.png")
        print(f"screenshot of the failure: {path}")
        raise


def test_ctrl_c_stops_everything_and_a_second_run_reuses_it(demo):
    run, data, ports = demo
    first = run.urls()
    assert run.interrupt() == 0
    assert [p for p in ports.values() if port_in_use(p)] == []
    again = Demo(data, ports)
    try:
        again.wait_ready()
        assert again.urls() == first                     # same projects, same tasks
        assert all("reused, 0 imported now" in line
                   for line in again.lines if line.startswith("  Demo: "))
        # at 80 columns only a path or URL alone on its line may be longer
        long = [line for line in again.lines if len(line) > 80 and " " in line.strip()]
        assert long == [], long
    finally:
        assert again.interrupt() == 0
    assert [p for p in ports.values() if port_in_use(p)] == []
