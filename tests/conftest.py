"""Shared fixtures: the tiny klein pipeline (random weights, CPU) built once per session."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-cache")
    os.environ["RAY_PLANTAIN_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_loaded(tiny_cache):
    from probe.klein.model import ModelSpec, load_pipeline

    return load_pipeline(ModelSpec("tiny", device="cpu"))


@pytest.fixture(scope="session")
def tiny_pipe(tiny_loaded):
    return tiny_loaded.pipe
