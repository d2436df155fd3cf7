from twisted.application.service import ServiceMaker

lmap = ServiceMaker("lmm-lmap", "lmm.lmap.tap", "lmm Local Mobility Anchor Point (PMIPv6 anchor)", "lmm-lmap")
