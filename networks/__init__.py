"""Networks and what feeds and trains them: GoogLeNet (Inception v1), image and region
transforms, training-time augmentation, and the one training engine (engine.py) that
MultiBox (proposals/) and the region classifier (detector/) both run on."""
