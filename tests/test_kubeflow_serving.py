"""kubeflow/serving/*.yaml: TensorFlow Serving 2.16.1 for the pushed model, non-root, read-only model volume."""

import glob
import os

import pytest
import yaml

from pipeline import configs

SERVING_DIR = os.path.join(configs.REPO_ROOT, "kubeflow", "serving")


@pytest.fixture(scope="module")
def manifests():
    """Return {kind: manifest} of every document in kubeflow/serving/*.yaml."""
    documents = {}
    for path in sorted(glob.glob(os.path.join(SERVING_DIR, "*.yaml"))):
        with open(path) as manifest_file:
            for document in yaml.safe_load_all(manifest_file):
                assert document["kind"] not in documents, f"two {document['kind']} manifests"
                documents[document["kind"]] = document
    return documents


@pytest.fixture(scope="module")
def pod(manifests):
    return manifests["Deployment"]["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod):
    assert len(pod["containers"]) == 1
    return pod["containers"][0]


def test_serving_manifest_kinds(manifests):
    assert set(manifests) == {"Deployment", "Service", "PersistentVolumeClaim"}


def test_serving_image_pinned(container):
    assert container["image"] == "tensorflow/serving:2.16.1"


def test_serving_model_arguments(container):
    assert container["command"] == ["/usr/bin/tensorflow_model_server"]
    args = container["args"]
    assert "--model_name=faq" in args
    assert "--model_base_path=/models/faq" in args
    assert "--port=8500" in args
    assert "--rest_api_port=8501" in args


def test_serving_container_ports(container):
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}


def test_serving_readiness_probe(container):
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == "/v1/models/faq"
    assert probe["port"] == "http"


def test_serving_runs_as_non_root(pod, container):
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_serving_model_volume_read_only(manifests, pod, container):
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert mounts["models"]["mountPath"] == "/models"
    assert mounts["models"]["readOnly"] is True
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    claim = volumes["models"]["persistentVolumeClaim"]
    assert claim["readOnly"] is True
    assert claim["claimName"] == manifests["PersistentVolumeClaim"]["metadata"]["name"]


def test_serving_service_ports(manifests):
    service = manifests["Service"]["spec"]
    ports = {port["name"]: (port["port"], port["targetPort"]) for port in service["ports"]}
    assert ports == {"grpc": (8500, "grpc"), "http": (8501, "http")}


def test_serving_service_selects_pods(manifests):
    deployment = manifests["Deployment"]["spec"]
    selector = manifests["Service"]["spec"]["selector"]
    assert selector == deployment["selector"]["matchLabels"]
    labels = deployment["template"]["metadata"]["labels"]
    assert all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("kind, model", [
    ("Deployment", "V1Deployment"),
    ("Service", "V1Service"),
    ("PersistentVolumeClaim", "V1PersistentVolumeClaim"),
])
def test_serving_fields_match_kubernetes_schema(manifests, kind, model):
    # The Kubernetes client's models drop unknown fields, so a misspelled or misplaced field
    # makes the round trip differ from the manifest.
    import json

    from kubernetes import client

    class Response:
        data = json.dumps(manifests[kind])

    api_client = client.ApiClient()
    parsed = api_client.deserialize(Response(), model)
    assert api_client.sanitize_for_serialization(parsed) == manifests[kind]
