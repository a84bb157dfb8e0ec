"""Loaders of EmoGen's small data artifacts: the emotion space and the attribute tables."""

from __future__ import annotations

from emogen_bench.artifacts.attr_tables import (
    AttrTables,
    AttrVocabulary,
    export_attr_tables_json,
    load_attr_coefficients,
    load_attr_tables_json,
    load_attr_vocabulary,
)
from emogen_bench.artifacts.emo_space import EmotionGaussian, load_emo_space

__all__ = [
    "AttrTables",
    "AttrVocabulary",
    "EmotionGaussian",
    "export_attr_tables_json",
    "load_attr_coefficients",
    "load_attr_tables_json",
    "load_attr_vocabulary",
    "load_emo_space",
]
