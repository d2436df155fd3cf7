from twisted.application.service import ServiceMaker

lmap = ServiceMaker("lmm-lmap", "lmm.lmap.tap", "lmm LMAP, the PMIPv6 anchor", "lmm-lmap")
