"""``labelbridge doctor``: does the Label Studio label config (+ mapping file) fit the Labelbox
ontology, both ways? Pure logic: loading, checking, findings. The CLI prints them; the server
logs them at start.

``findings``          the finding and report types, and the message contract (codes, wording)
``checker``           the checks' shared state and how findings name things
``labelbox_side``     Labelbox -> Label Studio checks
``labelstudio_side``  Label Studio -> Labelbox checks
``checks``            ``check(mapping, ontology)``: both sides, in order, duplicates removed
``sources``           reading the ontology from Labelbox, the label config from Label Studio
``run``               ``run_checks(settings, ...)``: inputs by precedence, remote ones in the
                      background with a deadline; ``log_report`` for the server's start
"""

from labelbridge.tools.doctor.checks import check
from labelbridge.tools.doctor.findings import Finding, Report, Severity, SourceError
from labelbridge.tools.doctor.run import log_report, run_checks, sources_configured
from labelbridge.tools.doctor.sources import (DEFAULT_TIMEOUT, label_config_from_label_studio,
                                              ontology_from_labelbox)

__all__ = ["DEFAULT_TIMEOUT", "Finding", "Report", "Severity", "SourceError", "check",
           "label_config_from_label_studio", "log_report", "ontology_from_labelbox",
           "run_checks", "sources_configured"]
