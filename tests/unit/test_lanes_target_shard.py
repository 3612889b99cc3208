"""A lane records a reply in its target's shard, whichever lane carried it.

The supervisor passes a lane held up by a long request over (``RoutingTable.place``), so
a request may run on a lane that is not its target's. Its record must still go to the
target's shard (``uvm.lanes.shard_for``), where a resend (on the target's lane) or a
run of the same id elsewhere meets it: two runs of one id on one shard conflict.
"""

from __future__ import annotations

import zlib

from bridge.codec import encode
from bridge.messages import DescribeRequest, SendRequest
from lexicon.frames import REQUEST
from tests.unit.test_lanes_serving import Recording
from uvm.lanes import Serving


def test_the_shard_is_the_targets_whichever_lane_carried_it(kernel):
    fake = Recording(kernel)
    serving = Serving(fake, "inc-7-1")
    target = "genesis"
    own = str(zlib.crc32(target.encode()) % 4)
    other = str((int(own) + 1) % 4)
    serving.answer([REQUEST, encode(SendRequest(id="r-1", target=target,
                                                selector="printString"))], other, 4)
    serving.answer([REQUEST, encode(DescribeRequest(id="r-2", target=target))], other, 4)
    serving.answer([REQUEST, encode(DescribeRequest(id="r-3", target=target))], other)
    assert [call["shard"] for call in fake.calls] == [own, own, other]
