"""Item retrieval: the ``ItemIndex`` protocol, exact (torch) and FAISS indexes, interchangeable
through ``RecommendConfig.index``; the index of a run lives in ``RUN/index/``."""

from hydrarec.retrieval.base import Exclusion, ItemIndex
from hydrarec.retrieval.exact import ExactIndex
from hydrarec.retrieval.registry import INDEXES, load_index, make_index

__all__ = ["INDEXES", "ExactIndex", "Exclusion", "ItemIndex", "load_index", "make_index"]
