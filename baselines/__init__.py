"""Baselines of the EICG task (Stable Diffusion, Textual Inversion, DreamBooth, caption-finetuned SD).

Each writes benchmark submissions through the public API of :mod:`emogen_bench`.
"""
