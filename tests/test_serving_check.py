"""The serving check: the plain function on fixture models and the TFX component in a real run."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest
from tfx import v1 as tfx
from tfx.orchestration import metadata

import serving_models
from components.serving.check import ServingCheck
from components.serving.check import check_served_model


def test_check_blesses_good_model(tmp_path):
    serving_models.save_fixture_model(str(tmp_path / "model"))

    result = check_served_model(str(tmp_path / "model"))

    assert result.failures == []
    assert result.blessed is True
    assert result.embedding_dim == serving_models.EMBEDDING_DIM


def test_check_rejects_nan_embedding(tmp_path):
    serving_models.save_fixture_model(str(tmp_path / "model"), defect="nan_embedding")

    result = check_served_model(str(tmp_path / "model"))

    assert result.blessed is False
    assert result.failures == ["encode_question embedding has non-finite values"]


def test_check_rejects_wrong_embedding_shape(tmp_path):
    serving_models.save_fixture_model(str(tmp_path / "model"), defect="wrong_embedding_shape")

    result = check_served_model(str(tmp_path / "model"))

    dim = serving_models.EMBEDDING_DIM
    assert result.blessed is False
    assert result.failures == [
        f"encode_question has dim {dim} but encode_answer has dim {dim + 1}"
    ]


def test_check_rejects_unloadable_model(tmp_path):
    model_dir = tmp_path / "model"
    serving_models.save_fixture_model(str(model_dir))
    (model_dir / "saved_model.pb").write_bytes(b"not a SavedModel")

    result = check_served_model(str(model_dir), ready_timeout_seconds=10)

    assert result.blessed is False
    assert len(result.failures) == 1
    assert result.failures[0].startswith("model server did not load the model")


def run_check_pipeline(root, defect):
    """Run Importer(fixture Model) -> ServingCheck with LocalDagRunner; return the InfraBlessing."""
    model_uri = root / "model"
    serving_models.save_fixture_model(str(model_uri / "Format-Serving"), defect=defect)
    importer = tfx.dsl.Importer(
        source_uri=str(model_uri), artifact_type=tfx.types.standard_artifacts.Model
    ).with_id("model_importer")
    check = ServingCheck(model=importer.outputs["result"])
    metadata_path = root / "metadata.sqlite"
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="serving_check_test",
        pipeline_root=str(root / "pipeline_root"),
        components=[importer, check],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(metadata_path)
        ),
    )

    tfx.orchestration.LocalDagRunner().run(pipeline)

    config = tfx.orchestration.metadata.sqlite_metadata_connection_config(str(metadata_path))
    with metadata.Metadata(config) as store:
        artifacts = store.store.get_artifacts_by_type("InfraBlessing")
    return artifacts


@pytest.mark.parametrize("defect, blessed", [(None, 1), ("nan_embedding", 0)])
def test_serving_check_component_marks_blessing(tmp_path, defect, blessed):
    artifacts = run_check_pipeline(tmp_path, defect)

    assert len(artifacts) == 1
    blessing = artifacts[0]
    assert blessing.custom_properties["blessed"].int_value == blessed
    marker = "INFRA_BLESSED" if blessed else "INFRA_NOT_BLESSED"
    assert sorted(os.listdir(blessing.uri)) == [marker]
