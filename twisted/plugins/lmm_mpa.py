from twisted.application.service import ServiceMaker

mpa = ServiceMaker("lmm-mpa", "lmm.mpa.tap", "lmm MPA, the PMIPv6 access router", "lmm-mpa")
