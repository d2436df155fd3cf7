from twisted.application.service import ServiceMaker

mpa = ServiceMaker("lmm-mpa", "lmm.mpa.tap", "lmm Mobility Proxy Agent (PMIPv6 access router)", "lmm-mpa")
