"""`labelbridge doctor` reading the ontology through the real labelbox SDK from the Labelbox
stand-in, and the label config through label-studio-sdk; unreachable services are findings."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from labelbridge.service.cli import app
from labelbridge.settings import env_names, load_settings
from labelbridge.labelbox.ontology import Ontology
from labelbridge.tools.doctor import ontology_from_labelbox, run_checks

from tests.lbstandin import Feature, LabelboxStandIn, Option
from tests.procs import free_port

PROJECT = "cdoctorproject00000000001"
KEY = "test-key"

ONTOLOGY = [
    Feature("car", "bbox", nested=[Feature("occluded", "radio", options=["yes", "no"])]),
    Feature("person", "bbox", nested=[Feature("occluded", "radio", options=["yes", "no"])]),
    Feature("lane", "polyline"),
    Feature("weather", "radio", options=["sunny", Option("rainy", nested=[
        Feature("rain_intensity", "radio", options=["light", "heavy"])])]),
    Feature("tags", "checklist", options=["blurry", "dark"]),
    Feature("caption", "text"),
    Feature("rides", "relationship"),
]

MATCHING = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image"><Label value="Car"/><Label value="Person"/>
    </RectangleLabels>
  <Choices name="occluded" toName="image" perRegion="true"><Choice value="yes"/>
    <Choice value="no"/></Choices>
  <Choices name="weather" toName="image"><Choice value="sunny"/><Choice value="rainy"/></Choices>
  <Choices name="rain_intensity" toName="image" visibleWhen="choice-selected"
           whenTagName="weather" whenChoiceValue="rainy">
    <Choice value="light"/><Choice value="heavy"/></Choices>
  <Choices name="tags" toName="image" choice="multiple"><Choice value="blurry"/>
    <Choice value="dark"/></Choices>
  <TextArea name="caption" toName="image"/>
  <Relations><Relation value="rides"/></Relations>
</View>"""

BROKEN = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image"><Label value="Car"/><Label value="Truck"/>
    </RectangleLabels>
  <Choices name="occluded" toName="image"><Choice value="yes"/><Choice value="no"/></Choices>
  <Choices name="weather" toName="image"><Choice value="sunny"/><Choice value="rainy"/>
    <Choice value="night"/></Choices>
  <Choices name="rain_intensity" toName="image"><Choice value="light"/><Choice value="heavy"/>
    </Choices>
  <Choices name="tags" toName="image"><Choice value="blurry"/></Choices>
  <TextArea name="note" toName="image"/>
</View>"""

BROKEN_FINDINGS = [
    ("error", "nesting-mismatch", "Labelbox classification 'occluded' is nested under tool 'car' "
                                  "but Label Studio control 'occluded' is not perRegion"),
    ("error", "lb-unmapped-object", "Labelbox tool 'person' (bbox) has no Label Studio control"),
    ("warning", "unsupported", "Labelbox tool 'lane' (polyline) cannot be shown in Label "
                               "Studio: it has no image polyline tool"),
    ("error", "nesting-mismatch", "Labelbox classification 'rain_intensity' is nested under "
                                  "'weather' = 'rainy' but Label Studio control 'rain_intensity' "
                                  "has no visibleWhen parent"),
    ("error", "kind-mismatch", "Labelbox classification 'tags' is checklist (multiple answers) "
                               "but Label Studio control 'tags' is single-choice"),
    ("error", "lb-unmapped-option", "Labelbox option 'dark' of 'tags' has no <Choice> in control "
                                    "'tags'"),
    ("error", "lb-unmapped-classification", "Labelbox classification 'caption' (text) has no "
                                            "Label Studio control"),
    ("error", "relationship-unmapped", "Labelbox relationship 'rides' has no <Relation value> in "
                                       "Label Studio"),
    ("error", "ls-unmapped-label", "Label Studio label 'Truck' of control 'label' "
                                   "(RectangleLabels) has no Labelbox feature"),
    ("error", "ls-unmapped-choice", "Label Studio choice 'night' of control 'weather' has no "
                                    "Labelbox option"),
    ("error", "ls-unmapped-control", "Label Studio control 'note' (TextArea) has no Labelbox "
                                     "classification"),
]


@pytest.fixture(scope="module")
def standin():
    s = LabelboxStandIn(api_key=KEY).start()
    s.add_project(PROJECT, name="doctor", ontology=ONTOLOGY)
    yield s
    s.stop()


@pytest.fixture
def env(monkeypatch, tmp_path, standin):
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    values = {"LABELBOX_API_KEY": KEY, "LABELBOX_PROJECT_ID": PROJECT,
              "LABELBOX_ENDPOINT": standin.endpoint,
              "LABELBOX_REST_ENDPOINT": standin.rest_endpoint,
              "LABELBOX_APP_URL": standin.app_url,
              "LABELBRIDGE_DATA_DIR": str(tmp_path / "var")}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "matching.xml").write_text(MATCHING)
    (tmp_path / "broken.xml").write_text(BROKEN)
    return tmp_path


def test_ontology_through_the_sdk(env, standin):
    ont = ontology_from_labelbox(load_settings())
    assert [(f.name, f.kind, f.tool) for f in ont.objects] == [
        ("car", "bbox", "rectangle"), ("person", "bbox", "rectangle"),
        ("lane", "polyline", "line")]
    assert ont.relationship_names == ("rides",)
    assert [(c.name, c.kind) for c in ont.classifications] == [
        ("weather", "radio"), ("tags", "checklist"), ("caption", "text")]
    rainy = ont.classifications[0].options[1]
    assert (rainy.name, [c.name for c in rainy.classifications]) == ("rainy", ["rain_intensity"])
    assert ont.objects[0].classifications[0].options[0].schema_id
    # the same tree as the SDK's own normalized JSON, parsed from a file
    normalized = standin.client().get_project(PROJECT).ontology().normalized
    assert Ontology.from_normalized(normalized) == ont


def test_matching_label_config_against_the_remote_ontology(env):
    report = run_checks(load_settings(), label_config_path=env / "matching.xml")
    assert [(f.severity, f.code) for f in report.findings] == [("warning", "unsupported")]
    assert report.ok
    assert report.sources["ontology"] == f"Labelbox project {PROJECT}"


def test_broken_label_config_against_the_remote_ontology(env):
    report = run_checks(load_settings(), label_config_path=env / "broken.xml")
    assert [(f.severity, f.code, f.message) for f in report.findings] == BROKEN_FINDINGS
    assert not report.ok


def test_cli_against_the_stand_in(env):
    runner = CliRunner()
    ok = runner.invoke(app, ["doctor", "--label-config", str(env / "matching.xml")])
    assert ok.exit_code == 0, ok.output
    broken = runner.invoke(app, ["doctor", "--label-config", str(env / "broken.xml"), "--json"])
    assert broken.exit_code == 1, broken.output
    assert [(f["severity"], f["code"], f["message"]) for f in
            json.loads(broken.stdout)["findings"]] == BROKEN_FINDINGS


def test_wrong_key_and_unknown_project_are_remote_errors(env, monkeypatch):
    monkeypatch.setenv("LABELBOX_API_KEY", "wrong-key")
    report = run_checks(load_settings(), label_config_path=env / "matching.xml")
    assert [f.code for f in report.findings] == ["remote-error"]
    assert report.findings[0].message.startswith(
        f"Labelbox could not read project '{PROJECT}': AuthenticationError")
    monkeypatch.setenv("LABELBOX_API_KEY", KEY)
    monkeypatch.setenv("LABELBOX_PROJECT_ID", "cnosuchproject00000000001")
    report = run_checks(load_settings(), label_config_path=env / "matching.xml")
    assert [f.code for f in report.findings] == ["remote-error"]
    assert report.findings[0].message.startswith(
        "Labelbox could not read project 'cnosuchproject00000000001': ResourceNotFoundError")


def test_labelbox_down_is_unreachable(env, standin):
    standin.go_down()
    try:
        report = run_checks(load_settings(), label_config_path=env / "matching.xml", timeout=20)
    finally:
        standin.come_back()
    assert [(f.severity, f.code, f.message) for f in report.findings] == [
        ("error", "unreachable", "Labelbox is unreachable: ConnectionRefusedError: [Errno 111] "
                                 f"Connection refused (endpoint {standin.endpoint})")]


def test_closed_ports_are_unreachable(env, monkeypatch):
    ls_port, lb_port = free_port(), free_port()
    monkeypatch.setenv("LABELBOX_ENDPOINT", f"http://127.0.0.1:{lb_port}/graphql")
    settings = load_settings(LABEL_STUDIO_URL=f"http://127.0.0.1:{ls_port}/",
                             LABEL_STUDIO_API_KEY="k", LABEL_STUDIO_PROJECT_ID=3)
    report = run_checks(settings, timeout=20)
    assert [(f.severity, f.code, f.message) for f in report.findings] == [
        ("error", "unreachable", f"Label Studio at http://127.0.0.1:{ls_port} is unreachable: "
                                 "ConnectionRefusedError: [Errno 111] Connection refused"),
        ("error", "unreachable", "Labelbox is unreachable: ConnectionRefusedError: [Errno 111] "
                                 f"Connection refused (endpoint http://127.0.0.1:{lb_port}/"
                                 "graphql)")]
    assert report.sources["label_config"] == f"Label Studio project 3 at http://127.0.0.1:{ls_port}"
    result = CliRunner().invoke(app, ["doctor", "--ls-project", "3", "--json"],
                                env={"LABEL_STUDIO_URL": f"http://127.0.0.1:{ls_port}",
                                     "LABEL_STUDIO_API_KEY": "k"})
    assert result.exit_code == 1
    assert [f["code"] for f in json.loads(result.stdout)["findings"]] == ["unreachable"] * 2


