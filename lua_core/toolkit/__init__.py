"""What training, evaluation and the benchmarks share, and the shipped nodes never load.

``images`` (read, list, crop, downsample image files), ``photo_sets`` (which photographs train, validate and
evaluate), ``clock`` (wall-clock timing of device work) and ``standin_vae`` (the near-lossless stand-in of the
user's VAE and the teacher it gives).  It sits on its own floor above the runtime (``scripts/import_graph.py``).
"""
