"""Name mapping, id rules and settings validation."""

import uuid

import pytest

from labelbridge.labelstudio.mapping import Mapping, MappingError, Overrides
from labelbridge.model.ids import (LABELBRIDGE_NAMESPACE, clean_region_id, is_valid_region_id,
                                   ndjson_uuid, region_id_for_feature)
from labelbridge.settings import Settings, SettingsError, env_names, load_settings

from tests.helpers import IMAGE_CONFIG

# ----- ids -----------------------------------------------------------------------------------

def test_namespace_never_changes():
    assert LABELBRIDGE_NAMESPACE == uuid.UUID("5b1d4e0c-7a53-4c8e-9f65-1abe1b0d9e11")
    assert ndjson_uuid("lbBox000001") == str(uuid.uuid5(LABELBRIDGE_NAMESPACE, "lbBox000001"))


def test_region_ids():
    assert region_id_for_feature("clrf5csvi6ofm07lsf9pygwvi") == "clrf5csvi6ofm07lsf9pygwvi"
    derived = region_id_for_feature("bad#id", "row", 3)
    assert derived == region_id_for_feature("bad#id", "row", 3) and is_valid_region_id(derived)
    assert region_id_for_feature(None, "row", 3) != region_id_for_feature(None, "row", 4)
    assert clean_region_id("abc#ann12") == "abc"
    assert not is_valid_region_id("a b") and not is_valid_region_id("a#b")


# ----- mapping -------------------------------------------------------------------------------

def test_names_match_case_insensitively_and_kinds_disambiguate():
    m = Mapping(IMAGE_CONFIG)
    assert m.object_target("bbox", "car").label == "Car"
    assert m.object_target("polygon", "ROAD").control == "poly"
    assert m.object_target("polygon", "car") is None        # no polygon "Car" tool
    assert m.classification_target("Occluded", per_region=True).control == "occluded"
    assert m.classification_target("occluded", per_region=False) is None
    assert m.classification_target("weather", False).kind == "radio"
    assert m.classification_target("attributes", True).kind == "checklist"
    assert m.classification_target("count", False).tag == "Number"
    assert m.relation_label("DRIVES") == "drives" and m.relation_label("owns") is False


def test_ambiguous_names_are_not_guessed():
    config = ('<View><Image name="a" value="$a"/><Image name="b" value="$b"/>'
              '<RectangleLabels name="x" toName="a"><Label value="Car"/></RectangleLabels>'
              '<RectangleLabels name="y" toName="b"><Label value="Car"/></RectangleLabels></View>')
    assert Mapping(config).object_target("bbox", "Car") is None


def test_labelbox_spelling_is_used_when_known():
    m = Mapping(IMAGE_CONFIG, labelbox_names={"car", "Weather"})
    assert m.object_from_ls("label", "Car").labelbox == "car"
    assert m.classification_from_ls("weather").labelbox == "Weather"


def test_overrides_are_validated_against_the_config():
    ov = Overrides.from_dict({"objects": [{"labelbox": "V", "control": "nope", "label": "Car"}],
                              "classifications": [{"labelbox": "Q", "control": "weather",
                                                   "answers": {"S": "snowy"}}]})
    m = Mapping(IMAGE_CONFIG, ov)
    assert any("no control 'nope'" in p for p in m.problems)
    assert any("has no choice 'snowy'" in p for p in m.problems)


@pytest.mark.parametrize("raw, message", [
    ([], "must be a YAML mapping"),
    ({"things": []}, "unknown top-level keys"),
    ({"objects": {"a": 1}}, "'objects' must be a list"),
    ({"objects": [{"labelbox": "x"}]}, "objects[0] needs control"),
    ({"options": {"rotated_boxes": "spin"}}, "rotated_boxes must be"),
])
def test_bad_mapping_files_say_what_is_wrong(raw, message):
    with pytest.raises(MappingError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Overrides.from_dict(raw)


def test_bad_label_config():
    with pytest.raises(MappingError, match="label config"):
        Mapping("<View><Image")


# ----- settings ------------------------------------------------------------------------------

def test_defaults_need_no_keys(monkeypatch):
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    s = load_settings()
    assert (s.host, s.port, s.sink, s.labelbox_import_kind) == ("127.0.0.1", 9090, "file",
                                                                "ground_truth")


@pytest.mark.parametrize("env, message", [
    ({"LABELBRIDGE_PORT": "0"}, "LABELBRIDGE_PORT"),
    ({"LABELBRIDGE_EXPORT": "/nonexistent/export.ndjson"}, "LABELBRIDGE_EXPORT: path does not "
                                                            "exist"),
    ({"LABELBOX_IMPORT_KIND": "gold"}, "LABELBOX_IMPORT_KIND"),
    ({"BASIC_AUTH_USER": "u"}, "BASIC_AUTH_USER and BASIC_AUTH_PASS must be set together"),
    ({"LABELBOX_API_KEY": "k"}, "LABELBOX_PROJECT_ID is required"),
    ({"LABELBRIDGE_MATCH_ORDER": "url,title"}, "LABELBRIDGE_MATCH_ORDER"),
    ({"LABEL_STUDIO_URL": "http://ls"}, "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY"),
])
def test_wrong_values_stop_start_up_naming_the_variable(monkeypatch, env, message):
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_secrets_are_not_echoed(monkeypatch):
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABELBOX_API_KEY", "super-secret-key")
    monkeypatch.setenv("LABELBRIDGE_PORT", "x")
    with pytest.raises(SettingsError) as exc:
        load_settings()
    assert "super-secret-key" not in str(exc.value)
    monkeypatch.delenv("LABELBRIDGE_PORT")
    assert "super-secret-key" not in repr(Settings(LABELBOX_API_KEY="super-secret-key",
                                                   LABELBOX_PROJECT_ID="p"))


def test_empty_values_mean_unset(monkeypatch):
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    for name in ("LABELBRIDGE_EXPORT", "BASIC_AUTH_USER", "BASIC_AUTH_PASS",
                 "LABEL_STUDIO_PROJECT_ID", "LABELBRIDGE_WEBHOOK_TOKEN"):
        monkeypatch.setenv(name, "")
    s = load_settings()
    assert s.export is None and s.basic_auth_user is None and s.webhook_token is None
    assert s.label_studio_project_id is None
