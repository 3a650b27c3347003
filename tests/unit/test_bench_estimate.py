"""bench_estimate's simulations are configs the simulator accepts, for every set it measures."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.bench_estimate import DATASETS, simulation
from simulate.config import parse_config


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_each_sets_simulation_is_a_valid_frozen_config_from_start_to_end(name):
    args = argparse.Namespace(batch=20, start=20, end=500, pool_size=5000, test_limit=1000, models="/models", seeds=5)
    config = parse_config(simulation(name, args), source=name)
    assert config.dataset.name == DATASETS[name]["name"] and config.acquisition_mode.mode == "frozen"
    assert config.seed_set.count + config.iterations * config.batch.count == 500 and len(config.seeds) == 5
