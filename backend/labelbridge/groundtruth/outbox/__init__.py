"""The durable outbox between the webhook and delivery: events in, batches out.

What other rooms may use is listed in ``__all__``; the parts are described in ``box.py``.
"""

from labelbridge.groundtruth.outbox.bookkeeping import REJECTED_BODY_CAP
from labelbridge.groundtruth.outbox.box import Outbox
from labelbridge.groundtruth.outbox.errors import (DuplicateImportName, LeaseLost, OutboxBusy,
                                                   OutboxClosed, OutboxError, OutboxUnavailable)
from labelbridge.groundtruth.outbox.model import (INCARNATION_STEP, STATES, AppendResult, Batch,
                                                  Delivery, IncomingEvent, State, WorkItem,
                                                  ls_annotation_id, parse_timestamp)
from labelbridge.groundtruth.outbox.queue import DEFAULT_LEASE_S

__all__ = ["Outbox", "IncomingEvent", "AppendResult", "Batch", "WorkItem", "Delivery", "State",
           "STATES", "INCARNATION_STEP", "DEFAULT_LEASE_S", "REJECTED_BODY_CAP",
           "parse_timestamp", "ls_annotation_id", "OutboxError", "OutboxUnavailable",
           "OutboxClosed", "OutboxBusy", "DuplicateImportName", "LeaseLost"]
