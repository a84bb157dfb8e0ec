"""Baselines of the EICG task (Stable Diffusion, Textual Inversion, DreamBooth, caption-finetuned SD).

Each implements :class:`baselines.common.Baseline` (``train`` into a checkpoint folder, ``generate`` a
benchmark submission), is found by name through :func:`baselines.common.get_baseline`, and is run from the
command line as ``emogen-bench baseline <name> train|generate`` (:mod:`baselines.cli`). They build on the
public API of :mod:`emogen_bench` and on the reference implementation's SD loader and sampler.
"""
