"""TFX module files of Transform and Trainer.

Local runs hand TFX this folder's files (hashed into the cache key); Kubeflow
runs call the same functions installed in the image.
"""
