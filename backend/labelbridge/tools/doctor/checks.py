"""``check``: both directions of the checks, in the order their findings are reported."""

from __future__ import annotations

from labelbridge.labelbox.ontology import Ontology
from labelbridge.labelstudio.mapping import Mapping
from labelbridge.tools.doctor.checker import Place
from labelbridge.tools.doctor.findings import Finding
from labelbridge.tools.doctor.labelbox_side import LabelboxSide
from labelbridge.tools.doctor.labelstudio_side import LabelStudioSide


class _Checker(LabelboxSide, LabelStudioSide):
    def run(self) -> list[Finding]:
        for problem in self.m.problems:
            self.error("mapping-problem", problem)
        for f in self.o.objects:
            self.lb_object(f)
        for c in self.o.classifications:
            self.lb_question(c, Place())
        self.relationships()
        for o in self.m.objects:
            self.ls_label(o)
        for t in self.m.classifications:
            self.ls_control(t)
        self.ls_parents()
        self.ls_unsupported()
        seen: set[Finding] = set()
        out = []
        for f in self.findings:
            if f not in seen:
                seen.add(f)
                out.append(f)
        return out


def check(mapping: Mapping, ontology: Ontology) -> list[Finding]:
    """Every way ``mapping`` (label config + mapping file) and ``ontology`` do not fit."""
    return _Checker(mapping, ontology).run()
