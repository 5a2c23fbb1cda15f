"""The models: the cat DCGAN and the die CVAE, their data sets, training, quantization, the
numpy integer golden reference (`models.reference`) and the exporters.

Only training, quantization and export import torch; `models.reference` and the weight-image
reader are numpy-only so the runtime path never loads torch. Keep this file free of imports.

The cat:
    weightimage  the .qcw SD weight image: encode/decode/verify, synthetic models   (numpy)
    reference    the golden integer reference every engine matches exactly          (numpy)
    data         procedural cartoon cat faces and an image-folder loader     (numpy, Pillow)
    checkerboard how strongly images carry the 2-pixel grid of stride-2 transposed convs  (numpy)
    quality      PSNR / SSIM of the int8 model against the float one          (numpy; torch
                 only inside `measure`)
    cat          the DCGAN generator/discriminator and checkpoints                  (torch)
    train        resumable training with sample grids                               (torch)
    quantize     BN folding, calibration, int8 export to a WeightImage              (torch)
    torch_int    the int8 generator in torch int64 tensors, checked == reference    (torch)
    shipped/     cat-demo.qcw (the shipped weight image) and cat-demo.pt (its float generator)
"""
