"""PipelineConfig validation, its CLI flags, and the Beam options it builds."""

import argparse
import dataclasses

import pytest

from pipeline import configs


def test_defaults_are_valid():
    configs.PipelineConfig().validate()


@pytest.mark.parametrize("field, value, message", [
    ("eval_fraction", 1.5, "eval_fraction=1.5 is invalid"),
    ("validation_fraction", 0.0, "validation_fraction=0.0 is invalid"),
    ("batch_size", 1, "batch_size=1 is invalid"),
    ("epochs", 0, "epochs=0 is invalid"),
    ("num_negatives", 64, "num_negatives=64 is invalid with batch_size=64"),
    ("margin", -0.1, "margin=-0.1 is invalid"),
    ("margin", float("nan"), "margin=nan is invalid"),
    ("learning_rate", 0.0, "learning_rate=0.0 is invalid"),
    ("learning_rate", float("inf"), "learning_rate=inf is invalid"),
    ("min_recall_at_1", 1.5, "min_recall_at_1=1.5 is invalid"),
    ("max_examples", -5, "max_examples=-5 is invalid"),
    ("beam_workers", -3, "beam_workers=-3 is invalid"),
    ("beam_runner", "Foo", "beam_runner='Foo' is invalid"),
    ("model_name", "../escaped", "model_name='../escaped' is invalid"),
    ("model_name", "", "model_name='' is invalid"),
    ("early_stopping_patience", -1, "early_stopping_patience=-1 is invalid"),
])
def test_invalid_values_name_the_field(field, value, message):
    config = dataclasses.replace(configs.PipelineConfig(), **{field: value})
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        config.validate()


def test_missing_schema_fails_local_check_only():
    config = dataclasses.replace(configs.PipelineConfig(), schema_path="/no/such/schema.pbtxt")
    config.validate()  # Kubeflow compiles with a path inside the image.
    with pytest.raises(ValueError, match="schema_path='/no/such/schema.pbtxt' not found"):
        config.check_local_files()


def test_num_negatives_upper_bound():
    dataclasses.replace(configs.PipelineConfig(), num_negatives=63).validate()


def test_every_field_is_a_flag_with_help():
    parser = argparse.ArgumentParser()
    configs.add_config_arguments(parser)
    actions = {action.dest: action for action in parser._actions}  # pylint: disable=protected-access
    for field in dataclasses.fields(configs.PipelineConfig):
        assert field.name in actions, field.name
        assert field.metadata["help"] in actions[field.name].help, field.name


def test_flags_override_and_keep_types():
    parser = argparse.ArgumentParser()
    configs.add_config_arguments(parser)
    config = configs.config_from_arguments(parser.parse_args(["--epochs", "3", "--margin", "0.25", "--no-enable_cache"]))
    assert config.epochs == 3
    assert config.margin == 0.25
    assert config.enable_cache is False
    assert config.trainer_config()["epochs"] == 3
    assert config.transform_config()["max_question_length"] == 24


def test_beam_pipeline_args():
    assert configs.beam_pipeline_args("DirectRunner", 3, ["--x=1"]) == [
        "--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=3", "--x=1"]
    assert configs.beam_pipeline_args("FlinkRunner", 0, ["--flink_master=localhost:8081"]) == [
        "--runner=FlinkRunner", "--flink_master=localhost:8081"]
    with pytest.raises(ValueError, match="not supported"):
        configs.beam_pipeline_args("Foo")
