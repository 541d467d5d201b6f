"""seqcourse: the tested helper package behind the seqcourse book on sequence modeling.

Imported inside a Jupyter kernel (every notebook of the course imports it in its first cell), it
also sets up the kernel's figures for every reader (``seqcourse.viz.alt_text.setup_notebook_figures``):
each displayed figure is stored with alt text that says what it shows, on an opaque background
that stays legible in a dark theme. Elsewhere (scripts, tests) importing it changes nothing.
"""
from .viz.alt_text import setup_notebook_figures
from .device import Setup, available_devices, get_device, seed_everything, setup

__all__ = ["Setup", "available_devices", "get_device", "seed_everything", "setup"]

setup_notebook_figures()
