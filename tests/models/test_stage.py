"""``Stage``: the one place stage names are read."""

import json

import pytest

from models import ConfigError, Stage, load_card


def test_stage_names_levels_and_prior():
    assert Stage("level2").level == 2 and Stage("level2").index == 1
    assert Stage.of_level(3) == "level3" and not Stage.of_level(3).is_prior
    assert Stage.PRIOR == "prior" and Stage("prior").is_prior
    assert json.dumps({Stage.of_level(1): 1.0}) == '{"level1": 1.0}'  # a str: a JSON key as it is


@pytest.mark.parametrize("name", ["level0", "level", "Level1", "prior2", "level-1", ""])
def test_bad_stage_names_are_refused(name):
    with pytest.raises(ConfigError, match="is not a stage"):
        Stage(name)


def test_prior_has_no_level_number():
    with pytest.raises(ConfigError, match="not an autoencoder level"):
        _ = Stage.PRIOR.level


def test_stages_of_a_card_in_training_order():
    card = load_card("imagenet256_msp")
    assert Stage.all_of(card) == ["level1", "level2", "prior"]
    assert all(type(s) is Stage for s in Stage.all_of(card))
