"""Label Studio names take Labelbox's spelling by one rule, whatever order Labelbox's names come
in (a set's order changes between processes): exact first, then the only case variant, then the
first case variant in code point order, reported."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest

from labelbridge.labelstudio.mapping import Mapping, Overrides

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="Car"/><Label value="car"/><Label value="CAR"/><Label value="Bus"/>
  </RectangleLabels>
  <Choices name="Weather" toName="image"><Choice value="Sunny"/></Choices>
  <Relations><Relation value="Drives"/></Relations>
</View>"""
# Labelbox spellings: case variants of the label, the question, the option and the relation
NAMES = ["Car", "car", "weather", "WEATHER", "sunny", "SUNNY", "drives", "DRIVES", "bus"]


def resolved(m: Mapping) -> dict[str, str | None]:
    weather = m.classification_from_ls("Weather")
    return {**{label: m.object_from_ls("label", label).labelbox
               for label in ("Car", "car", "CAR", "Bus")},
            "question": weather.labelbox, "option": weather.labelbox_answer("Sunny"),
            "relation": m.relation_from_ls("Drives")}


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_the_spelling_does_not_depend_on_the_order_of_labelbox_names(order):
    names = [NAMES[i] for i in order] + NAMES[3:]
    forward, backward = Mapping(CONFIG, labelbox_names=names), \
        Mapping(CONFIG, labelbox_names=list(reversed(names)))
    assert resolved(forward) == resolved(backward) == {
        "Car": "Car", "car": "car",          # an exact spelling wins
        "CAR": "Car",                        # several variants, none exact: code point order
        "Bus": "bus",                        # the only variant
        "question": "WEATHER", "option": "SUNNY", "relation": "DRIVES"}
    assert forward.problems == backward.problems


def test_an_ambiguous_spelling_is_reported_once_with_every_variant():
    m = Mapping(CONFIG, labelbox_names=set(NAMES))
    assert m.problems == [
        f"label config name {ls!r} matches Labelbox names {a!r}, {b!r}, which differ only in "
        f"case: {a!r} is used (the first in code point order); rename the label, or map it in "
        "the mapping file"
        for ls, a, b in [("CAR", "Car", "car"), ("Drives", "DRIVES", "drives"),
                         ("Sunny", "SUNNY", "sunny"), ("Weather", "WEATHER", "weather")]]


def test_the_mapping_file_settles_an_ambiguous_spelling():
    ov = Overrides.from_dict({
        "objects": [{"labelbox": "car", "control": "label", "label": "CAR"}],
        "classifications": [{"labelbox": "weather", "control": "Weather",
                             "answers": {"sunny": "Sunny"}}],
        "relations": [{"labelbox": "drives", "label": "Drives"}]})
    m = Mapping(CONFIG, ov, labelbox_names=NAMES)
    assert m.problems == []
    assert resolved(m) | {"Car": None, "car": None, "Bus": None} == {
        "Car": None, "car": None, "CAR": "car", "Bus": None, "question": "weather",
        "option": "sunny", "relation": "drives"}


def test_every_process_resolves_the_same_way():
    """Labelbox's names arrive as a set (the prediction index's): its order is the hash seed's."""
    code = ("from labelbridge.labelstudio.mapping import Mapping\n"
            f"m = Mapping({CONFIG!r}, labelbox_names=set({NAMES!r}))\n"
            "print(m.object_from_ls('label', 'CAR').labelbox, "
            "m.object_from_ls('label', 'car').labelbox, m.fingerprint, len(m.problems))")
    seen = {tuple(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True, env={**os.environ, "PYTHONHASHSEED": str(seed)}
                                 ).stdout.split()) for seed in range(4)}
    assert len(seen) == 1 and next(iter(seen))[:2] == ("Car", "car")
