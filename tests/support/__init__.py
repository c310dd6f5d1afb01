"""Test-support code: a real ComfyUI server as a subprocess and the UI-to-API workflow converter.

Used by the integration and browser tests and by the maintainer scripts (``scripts/run_demo.py``,
``scripts/make_thumbnails.py``, ``scripts/build_workflows.py``), which run as ``python -m scripts.<name>`` from
the repository root and import ``tests.support.<module>``.
"""
