"""doctor on a video config: Labelbox rectangle tools are the VideoRectangle's labels."""

from __future__ import annotations

from labelbridge.labelstudio.mapping import Mapping
from labelbridge.labelbox.ontology import Ontology
from labelbridge.tools.doctor import check

from tests.helpers import ROOT

CONFIG = (ROOT / "configs" / "video-tracking.xml").read_text(encoding="utf-8")


def tool(name, kind="rectangle"):
    return {"name": name, "tool": kind, "classifications": [
        {"name": "occluded", "type": "radio", "options": [{"label": "yes", "value": "yes"},
                                                           {"label": "no", "value": "no"}]}]}


def findings(ontology):
    ont = Ontology.from_normalized(ontology)
    return [(f.severity, f.code, f.message) for f in check(Mapping(CONFIG, None, ont.names()), ont)]


def test_video_config_against_a_matching_video_ontology_is_clean():
    daytime = {"name": "daytime", "type": "radio",
               "options": [{"label": "day", "value": "day"}, {"label": "night", "value": "night"}]}
    assert findings({"tools": [tool("Car"), tool("Person")], "classifications": [daytime]}) == []


def test_a_point_tool_is_no_video_box_and_a_missing_label_is_named():
    got = findings({"tools": [tool("Car"), tool("Person", "point")], "classifications": []})
    messages = [m for _, _, m in got]
    assert ("error", "kind-mismatch", "Labelbox tool 'Person' is a point but Label Studio label "
            "'Person' is on control 'box' (VideoRectangle)") in got, messages
    assert not any("videoLabels" in m for m in messages), messages
