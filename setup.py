"""Packaging for faq-pipeline.

Dependencies are pinned in requirements.lock and installed from it (see the Makefile), so
install_requires only names the direct dependencies without versions: pip must never resolve
the TFX stack from scratch.
"""

import setuptools

setuptools.setup(
    name="faq-pipeline",
    version="0.1.0",
    description="TFX pipeline that trains and serves FAQ matching and answer generation models.",
    python_requires=">=3.10,<3.11",
    packages=setuptools.find_packages(include=["pipeline", "pipeline.*", "components", "components.*"]),
    package_data={"": ["*.pbtxt"]},
    install_requires=[
        "tfx",
        "tensorflow",
        "tf-keras",
        "tensorflow-transform",
        "tensorflow-serving-api",
        "chatterbot-corpus",
        "scikit-learn",
        "matplotlib",
    ],
    entry_points={"console_scripts": ["faq-pipeline=pipeline.cli:main"]},
)
