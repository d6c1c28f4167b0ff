"""Profiles load into typed sections; bad keys, types and values are errors that name them."""
import pytest

from s2i_lib.config import STEPS, Config, ConfigError, available_profiles, load_config


@pytest.mark.parametrize("profile", ["smoke", "default", "paper_cub", "paper_oxford"])
def test_every_profile_loads_and_validates(profile):
    cfg = load_config(profile)
    assert isinstance(cfg, Config) and cfg.profile == profile
    for step in STEPS:
        assert len(cfg.step_hash(step)) == 16


def test_available_profiles_lists_the_four_profiles():
    assert {"smoke", "default", "paper_cub", "paper_oxford"} <= set(available_profiles())


def test_cli_style_overrides_are_typed():
    cfg = load_config("smoke", ["gan.batch_size=32", "sen.lr=0.5", "gan.dense=false",
                                "speech.voices=[espeak:en-us, piper:joe]", "data.n_test_classes=null"])
    assert cfg.gan.batch_size == 32 and isinstance(cfg.gan.batch_size, int)
    assert cfg.sen.lr == 0.5 and cfg.gan.dense is False
    assert cfg.speech.voices == ["espeak:en-us", "piper:joe"]
    assert cfg.data.n_test_classes is None


def test_dict_overrides_flat_and_nested_agree():
    a = load_config("smoke", {"gan.batch_size": 12, "seed": 3})
    b = load_config("smoke", {"gan": {"batch_size": 12}, "seed": 3})
    assert a == b and a.gan.batch_size == 12 and a.seed == 3


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert load_config("smoke", {"sen.gamma": 5}).sen.gamma == 5.0
    with pytest.raises(ConfigError, match=r"gan.batch_size.*2.5.*integer"):
        load_config("smoke", {"gan.batch_size": 2.5})


@pytest.mark.parametrize("override, pattern", [
    ({"gan.batchsize": 8}, r"unknown config key 'gan.batchsize' \(did you mean 'gan.batch_size'\?\)"),
    ({"nosuchsection.x": 1}, r"unknown config key 'nosuchsection'"),
    ({"gan.dense": "yes"}, r"'gan.dense' = 'yes': must be true or false"),
    ({"data.dataset": "imagenet"}, r"'data.dataset' = 'imagenet': must be one of"),
    ({"data.image_size": 100}, r"'data.image_size' = 100"),
    ({"gan.stage_sizes": [16, 32, 48]}, r"'gan.stage_sizes' = \[16, 32, 48\]"),
    ({"gan.ema_decay": 1.5}, r"'gan.ema_decay' = 1.5"),
    ({"sen.batch_size": 1}, r"'sen.batch_size' = 1.*negatives"),
    ({"speech.voices": ["joe"]}, r"'speech.voices' = 'joe'.*backend:name"),
    ({"speech.heldout_voices": ["espeak:en-us"]}, r"held-out voice must not also be a training voice"),
    ({"device": "tpu"}, r"'device' = 'tpu'"),
    ({"data.dataset": "cub"}, r"'data.root' = None.*prepare_cub"),
    ({"gan": 3}, r"'gan' = 3: must be a section"),
    ({"gan.d_projection": False, "gan.contrastive_coeff": 1.0}, r"'gan.contrastive_coeff' = 1.0.*d_projection"),
    ({"gan.contrastive_coeff": -1.0}, r"'gan.contrastive_coeff' = -1.0: must be >= 0"),
])
def test_bad_values_name_the_key_and_value(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config("smoke", override)


def test_malformed_cli_override_is_an_error():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config("smoke", ["gan.batch_size"])


def test_unknown_profile_lists_the_available_ones():
    with pytest.raises(ConfigError, match=r"unknown profile 'nope'.*smoke"):
        load_config("nope")


def test_profile_file_with_unknown_key_is_rejected(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("data:\n  dataset: toybirds\n  imagesize: 64\n")
    with pytest.raises(ConfigError, match=r"'data.imagesize' \(did you mean 'data.image_size'"):
        load_config(p)
    p.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)


def test_step_hash_changes_downstream_only():
    base, changed = load_config("smoke"), load_config("smoke", {"sen.epochs": 7})
    assert base.step_hash("data") == changed.step_hash("data")
    assert base.step_hash("speech") == changed.step_hash("speech")
    for step in ("sen", "gan", "eval"):
        assert base.step_hash(step) != changed.step_hash(step)
    # the device does not change results' identity, the seed does
    assert load_config("smoke", {"device": "cpu"}).step_hash("eval") == base.step_hash("eval")
    assert load_config("smoke", {"seed": 1}).step_hash("data") != base.step_hash("data")


def test_ablations_extend_the_eval_step_instead_of_changing_it():
    plain, with_ablations = load_config("smoke"), load_config("smoke", {"eval.ablations": True})
    assert plain.step_hash("eval") == with_ablations.step_hash("eval")
    assert load_config("smoke", {"eval.colour_swaps": 7}).step_hash("eval") != plain.step_hash("eval")
    # what a finished run (its metrics.json "config") did against what is asked
    finished_plain = {"config": {"eval": {"ablations": False}}}
    finished_with = {"config": {"eval": {"ablations": True}}}
    assert "eval.ablations" in with_ablations.missing_extensions("eval", finished_plain)
    assert with_ablations.missing_extensions("eval", finished_with) is None
    assert plain.missing_extensions("eval", finished_with) is None     # what was added is kept
    assert plain.missing_extensions("eval", finished_plain) is None
    assert with_ablations.missing_extensions("gan", {"config": {"gan": {}}}) is None
