"""A small TF Serving client for the FAQ model's signatures (grpc, tensorflow-serving-api, numpy)."""

from typing import Dict, List, Optional, Sequence

import grpc
import numpy as np
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from components.serving.tensors import make_ndarray
from components.serving.tensors import make_tensor_proto

DEFAULT_TIMEOUT_SECONDS = 30.0


class ServingClient:
    """gRPC client of one model on a TF Serving-compatible server, usable as a context manager."""

    def __init__(
        self,
        address: str = "127.0.0.1:8500",
        model_name: str = "faq",
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_message_bytes: Optional[int] = None,
    ):
        options = []
        if max_message_bytes:
            options = [
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ]
        self.address = address
        self.model_name = model_name
        self.timeout_seconds = timeout_seconds
        self._channel = grpc.insecure_channel(address, options=options)
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._model = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "ServingClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def make_request(
        self,
        signature_name: str,
        inputs: Dict[str, object],
        version: Optional[int] = None,
        output_filter: Sequence[str] = (),
    ) -> predict_pb2.PredictRequest:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature_name
        if version is not None:
            request.model_spec.version.value = version
        for alias, values in inputs.items():
            request.inputs[alias].CopyFrom(make_tensor_proto(values))
        request.output_filter.extend(output_filter)
        return request

    def predict_response(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        return self._prediction.Predict(request, timeout=self.timeout_seconds)

    def predict(
        self,
        signature_name: str,
        inputs: Dict[str, object],
        version: Optional[int] = None,
        output_filter: Sequence[str] = (),
    ) -> Dict[str, np.ndarray]:
        """Call Predict and return {output name: numpy array}. Raises grpc.RpcError on failure."""
        request = self.make_request(signature_name, inputs, version, output_filter)
        response = self.predict_response(request)
        return {alias: make_ndarray(proto) for alias, proto in response.outputs.items()}

    def encode_questions(self, questions: Sequence[str], version: Optional[int] = None) -> np.ndarray:
        return self.predict("encode_question", {"question": list(questions)}, version)["embedding"]

    def encode_answers(self, answers: Sequence[str], version: Optional[int] = None) -> np.ndarray:
        return self.predict("encode_answer", {"answer": list(answers)}, version)["embedding"]

    def decode(
        self, questions: Sequence[str], answers: Sequence[str], version: Optional[int] = None
    ) -> Dict[str, np.ndarray]:
        return self.predict("decode", {"question": list(questions), "answer": list(answers)}, version)

    def signature_defs(self, version: Optional[int] = None) -> Dict[str, object]:
        """Return {signature key: SignatureDef} from GetModelMetadata."""
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = self.model_name
        if version is not None:
            request.model_spec.version.value = version
        request.metadata_field.append("signature_def")
        response = self._prediction.GetModelMetadata(request, timeout=self.timeout_seconds)

        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return dict(signature_map.signature_def)

    def available_versions(self) -> List[int]:
        """Return the AVAILABLE versions from GetModelStatus, ascending."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        response = self._model.GetModelStatus(request, timeout=self.timeout_seconds)
        return sorted(
            status.version
            for status in response.model_version_status
            if status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
        )

    def served_version(self) -> int:
        """Return the version that requests without a version go to (the highest AVAILABLE)."""
        versions = self.available_versions()
        if not versions:
            raise RuntimeError(
                f"Model {self.model_name} at {self.address} has no AVAILABLE version; check the "
                "server log and --model_base_path."
            )
        return versions[-1]
