"""The models: the cat DCGAN and the die CVAE, their data sets, training, quantization, the
numpy integer golden reference (`models.reference`) and the exporters.

Only training, quantization and export import torch; `models.reference` and the weight-image
reader are numpy-only so the runtime path never loads torch. Keep this file free of imports.
"""
