"""EmoGen (CVPR 2024), the reference method: trained and run on GPU, writing benchmark submissions.

Uses only the public API of :mod:`emogen_bench`; ``emogen_bench`` never imports this package.
"""
