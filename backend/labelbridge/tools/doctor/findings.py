"""What ``labelbridge doctor`` reports: findings (severity, code, message) and the report.

Message contract (tests assert these verbatim; keep them stable). ``<kind>`` is bbox, polygon,
point, polyline, span or mask; ``<type>`` is radio, checklist or text; ``<path>`` is
``tool 'car'`` and/or ``'weather' = 'rainy'`` segments joined by `` > ``; ``<place>`` is
``global`` or ``nested under <path>``; ``<ls desc>`` is the control's tag (``RectangleLabels``,
or ``Labels + Rectangle`` for a ``<Labels>`` shared by a geometry tool).

errors
  mapping-problem             every entry of ``Mapping.problems`` (verbatim), e.g.
                              ``mapping objects: no control 'nope' in the label config``
  lb-unmapped-object          ``Labelbox tool 'car' (bbox) has no Label Studio control``
  lb-unmapped-classification  ``Labelbox classification 'weather' (radio) has no Label Studio
                              control``; nested: ``Labelbox classification 'cause' (radio)
                              nested under tool 'car' > 'occluded' = 'yes' has no Label Studio
                              control``
  lb-unmapped-option          ``Labelbox option 'snowy' of 'weather' has no <Choice> in control
                              'weather'``
  ls-unmapped-label           ``Label Studio label 'Truck' of control 'label' (RectangleLabels)
                              has no Labelbox feature``; when the mapping file renames it, ``...
                              has no Labelbox feature (mapped to 'lorry')``; a label-less tool
                              named in the mapping file: ``Label Studio control 'box'
                              (Rectangle) has no Labelbox feature (mapped to 'vehicle')``
  ls-unmapped-control         ``Label Studio control 'note' (TextArea) has no Labelbox
                              classification`` (same suffix when renamed); a label-less tool
                              not in the mapping file: ``Label Studio control 'box' (Rectangle)
                              has no Labelbox tool: name one for it in the mapping file``
  ls-unmapped-choice          ``Label Studio choice 'night' of control 'weather' has no
                              Labelbox option``; when the control serves several Labelbox
                              classifications (per-region questions of several tools) and only
                              some lack it: ``... has no Labelbox option in 'occluded' nested
                              under tool 'person'``
  kind-mismatch               ``Labelbox tool 'road' is a polygon but Label Studio label 'road'
                              is on control 'label' (RectangleLabels)``;
                              ``Label Studio label 'lane' of control 'poly' (PolygonLabels) is a
                              polygon but Labelbox tool 'lane' is a polyline``;
                              ``Labelbox classification 'tags' is checklist (multiple answers)
                              but Label Studio control 'tags' is single-choice``; radio is
                              ``radio (one answer)``, text is ``text``; the Label Studio side is
                              ``single-choice``, ``multiple-choice`` (``choice="multiple"``) or
                              the tag (``TextArea``, ``Number``, ``Rating``)
  nesting-mismatch            ``Labelbox classification 'occluded' is nested under tool 'car'
                              but Label Studio control 'occluded' is not perRegion``;
                              ``Labelbox classification 'weather' is global but Label Studio
                              control 'weather' is perRegion``;
                              ``Labelbox classification 'rain_intensity' is nested under
                              'weather' = 'rainy' but Label Studio control 'rain_intensity' has
                              no visibleWhen parent``; ``... but Label Studio control
                              'rain_intensity' is shown when 'weather' = 'sunny'``;
                              ``Labelbox classification 'wet' is global but Label Studio control
                              'wet' is shown when 'rain_intensity' = 'heavy'``;
                              from the Label Studio side (a control no Labelbox question
                              resolved to): ``Label Studio control 'w2' is perRegion but
                              Labelbox classification 'weather' is global``; a broken parent in
                              the label config: ``Label Studio control 'x' is shown when 'y' =
                              'z', which is not a choice of a <Choices> control``
  ambiguous                   ``Labelbox tool 'car' (bbox) matches 2 Label Studio labels: 'Car'
                              of control 'a', 'Car' of control 'b'``; ``Labelbox classification
                              'weather' (radio) matches 2 Label Studio controls: 'w1', 'w2'``
  relationship-unmapped       ``Labelbox relationship 'owns' has no <Relation value> in Label
                              Studio``; ``Label Studio relation 'next_to' has no Labelbox
                              relationship``
  not-configured              ``no Label Studio label config: pass --label-config PATH or set
                              LABELBRIDGE_LABEL_CONFIG, or set LABEL_STUDIO_URL,
                              LABEL_STUDIO_API_KEY and LABEL_STUDIO_PROJECT_ID`` (variants
                              name what is missing); ``no Labelbox ontology: pass --ontology
                              PATH or set LABELBRIDGE_ONTOLOGY, or set LABELBOX_API_KEY and
                              LABELBOX_PROJECT_ID``
  unreadable                  ``<path>: cannot read ontology: ...``, ``<path>: not a Labelbox
                              ontology: ...``, ``<source>: label config: cannot parse: ...``,
                              ``<path>: cannot read mapping: ...``
  unreachable                 ``Label Studio at <url> is unreachable: <reason>``;
                              ``Labelbox is unreachable: <reason> (endpoint <graphql url>)``;
                              ``<reason>`` is the innermost cause, e.g.
                              ``ConnectionRefusedError: [Errno 111] Connection refused``, or
                              ``no answer within <timeout> s``
  remote-error                reachable but refused: ``Label Studio at <url> answered <status>:
                              <body>``; ``Labelbox could not read project '<id>': <reason>``

warnings (declared losses; they do not fail ``doctor``)
  unsupported                 ``Labelbox tool 'lane' (polyline) cannot be shown in Label Studio:
                              it has no image polyline tool``;
                              ``Labelbox tool 'x' (<Labelbox tool type>) is not supported``;
                              ``Labelbox classification 'x' (<Labelbox type>) is not
                              supported``; ``Labelbox tool 'PER' (span) is on HyperText control
                              'html': Labelbox character offsets cannot become HyperText
                              spans``; ``Label Studio control 'oval' (EllipseLabels) is not
                              supported: its annotations are not sent to Labelbox``
  nesting-mismatch            ``Labelbox relationship 'drives' has nested classifications, which
                              Label Studio relations cannot hold``; ``Label Studio control
                              'occluded' (perRegion) can be answered on 'person' regions but
                              Labelbox tool 'person' has no classification 'occluded'`` (narrow
                              it with visibleWhen="region-selected" whenLabelValue="...")
  name-spelling               ``Label Studio control 'weather' sends 'Weather' to Labelbox, which
                              spells it 'weather'`` (Labelbox may match names case-sensitively;
                              the mapping file's spelling is sent as written)

Identical findings are reported once (a per-region control shared by several tools).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "code": self.code, "message": self.message}


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)   # what was checked, from where

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True only when there is no error (warnings are declared losses)."""
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "errors": len(self.errors), "warnings": len(self.warnings),
                "sources": dict(self.sources),
                "findings": [f.as_dict() for f in self.findings]}


class SourceError(RuntimeError):
    """An input could not be loaded; ``code`` is the finding code, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

