from dataclasses import dataclass, field

import pytest

from openwfm.config import ConfigError, make_config, preset_names, register_preset, to_yaml


@dataclass
class Inner:
    rank: int = 256
    dropout: float = 0.0


@dataclass
class Outer:
    num_blocks: int = 28
    model_channels: int = 4096
    sigma_data: float = 0.5
    adaln_lora: Inner = field(default_factory=Inner)


@register_preset(Outer, "tiny")
def _tiny() -> Outer:
    return Outer(num_blocks=2, model_channels=64)


def test_defaults_preset_yaml_and_overrides_merge_in_order(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("model_channels: 128\nadaln_lora:\n  rank: 8\n")
    cfg = make_config(Outer, preset="tiny", yaml_files=[y], overrides=["adaln_lora.rank=4", "sigma_data=1.0"])
    assert (cfg.num_blocks, cfg.model_channels, cfg.adaln_lora.rank, cfg.sigma_data) == (2, 128, 4, 1.0)
    assert isinstance(cfg, Outer) and isinstance(cfg.adaln_lora, Inner)
    assert make_config(Outer) == Outer()
    assert "tiny" in preset_names(Outer)
    assert "num_blocks: 2" in to_yaml(make_config(Outer, preset="tiny"))


def test_unknown_override_key_names_it_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown key 'adaln_lora.rnak'.*did you mean 'adaln_lora.rank'"):
        make_config(Outer, overrides=["adaln_lora.rnak=4"])
    with pytest.raises(ConfigError, match=r"unknown key 'num_block'.*did you mean 'num_blocks'"):
        make_config(Outer, overrides=["num_block=3"])


def test_unknown_yaml_key_names_the_file(tmp_path):
    y = tmp_path / "bad.yaml"
    y.write_text("sigma_dat: 0.3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'sigma_dat'.*'sigma_data'"):
        make_config(Outer, yaml_files=[y])


def test_bad_values_files_and_presets_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"override 'num_blocks=abc'"):
        make_config(Outer, overrides=["num_blocks=abc"])
    with pytest.raises(ConfigError, match="expected key=value"):
        make_config(Outer, overrides=["num_blocks"])
    with pytest.raises(ConfigError, match="not found"):
        make_config(Outer, yaml_files=[tmp_path / "missing.yaml"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        make_config(Outer, yaml_files=[broken])
    with pytest.raises(ConfigError, match=r"unknown Outer preset 'tinny' \(did you mean 'tiny'\?\)"):
        make_config(Outer, preset="tinny")


def test_sim_config_validation():
    from openwfm.sim import SimConfig

    with pytest.raises(ConfigError, match="even"):
        make_config(SimConfig, overrides=["height=33"])
    with pytest.raises(ConfigError, match="min_objects"):
        make_config(SimConfig, overrides=["falling.min_objects=5"])
    assert make_config(SimConfig, preset="tiny").height == 48


def test_checkpoint_sharded_takes_yes_and_no_from_the_command_line():
    """YAML reads an unquoted yes / no as a boolean; checkpoint.sharded still gets the word it documents."""
    from openwfm.training_config import TrainConfig

    for word, want in [("yes", "yes"), ("no", "no"), ("true", "yes"), ("'auto'", "auto")]:
        cfg = make_config(TrainConfig, overrides=[f"checkpoint.sharded={word}"])
        cfg.validate()
        assert cfg.checkpoint.sharded == want
    with pytest.raises(ConfigError, match="auto|yes|no"):
        make_config(TrainConfig, overrides=["checkpoint.sharded=maybe"]).validate()
