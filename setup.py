from setuptools import Extension, find_packages, setup

setup(
    name="lmm",
    version="0.1.0",
    description="Localized mobility management with Proxy Mobile IPv6, on Twisted",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["lmm", "lmm.*"]) + ["twisted.plugins"],
    package_data={"twisted.plugins": ["lmm_*.py"]},
    include_package_data=True,
    # The RADIUS dictionaries sit beside the package in a checkout; an installed
    # copy finds them here (lmm.radius.dictionaryCandidates).
    data_files=[("share/lmm/radius_dicts", [
        "radius_dicts/dictionary", "radius_dicts/dictionary.rfc6572", "radius_dicts/dictionary.lmm",
    ])],
    install_requires=[
        "twisted>=23.10",
        "zope.interface>=6",
        "pyrad>=2.4",
        "pyroute2>=0.7",
        "prometheus_client>=0.17",
    ],
    extras_require={
        # scapy: an independent decoder for the tests and the benchmarks' scale figures.
        # mypy-zope: zope interfaces (Twisted's reactor interfaces, lmm's) as types.
        # atheris: coverage-guided fuzzing of the parsers (bench/fuzz.py, tests/test_fuzz.py).
        "test": ["hypothesis>=6.80", "ruff>=0.4", "mypy>=1.8", "mypy-zope>=1.0", "scapy>=2.5",
                 "atheris>=2.3"],
    },
    # The signaling's MAC in C (lmm/_hmac.c, issue 12): optional, so that a
    # machine without a compiler or libcrypto's headers still installs, and
    # lmm.security then uses its hashlib version (lmm.security.HMAC_IMPLEMENTATION).
    ext_modules=[Extension("lmm._hmac", ["lmm/_hmac.c"], libraries=["crypto"], optional=True)],
    entry_points={"console_scripts": ["lmm-lab = lmm.lab.cli:main", "lmmctl = lmm.ctl:main"]},
)
