"""Conversion between numpy arrays and TensorProto without importing TensorFlow ops.

The client uses these instead of `tf.make_tensor_proto` / `tf.make_ndarray` so it needs
only grpc, tensorflow-serving-api and numpy. The protos come from tensorflow-serving-api,
which itself imports the `tensorflow` package for the `tensorflow.core` protos.
"""

from typing import List

import numpy as np
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.framework import types_pb2

# DataType enum -> (numpy dtype, TensorProto field for the values).
_NUMPY_BY_DTYPE = {
    types_pb2.DT_FLOAT: (np.float32, "float_val"),
    types_pb2.DT_DOUBLE: (np.float64, "double_val"),
    types_pb2.DT_INT32: (np.int32, "int_val"),
    types_pb2.DT_INT64: (np.int64, "int64_val"),
    types_pb2.DT_BOOL: (np.bool_, "bool_val"),
    types_pb2.DT_STRING: (np.object_, "string_val"),
}

# Largest element count that a single value may be broadcast to. Every other tensor
# carries one value per element in the message, so gRPC's message size bounds its size.
MAX_BROADCAST_ELEMENTS = 1 << 16

_DTYPE_BY_NUMPY = {
    np.dtype(np.float32): types_pb2.DT_FLOAT,
    np.dtype(np.float64): types_pb2.DT_DOUBLE,
    np.dtype(np.int32): types_pb2.DT_INT32,
    np.dtype(np.int64): types_pb2.DT_INT64,
    np.dtype(np.bool_): types_pb2.DT_BOOL,
}


def dtype_name(dtype: int) -> str:
    """Return the DataType enum name, for example DT_STRING."""
    return types_pb2.DataType.Name(dtype)


def make_tensor_proto(values) -> tensor_pb2.TensorProto:
    """Convert a numpy array or nested list to a TensorProto.

    Python `str` and `bytes` become DT_STRING (str is UTF-8 encoded); numeric dtypes
    listed in `_DTYPE_BY_NUMPY` are packed into `tensor_content`.
    Raises ValueError for any other dtype.
    """
    array = np.asarray(values)
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape]
    )

    if array.dtype.kind in ("U", "S", "O"):
        encoded = [_to_bytes(item) for item in array.reshape(-1).tolist()]
        return tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=encoded
        )

    dtype = _DTYPE_BY_NUMPY.get(array.dtype)
    if dtype is None:
        supported = sorted(str(key) for key in _DTYPE_BY_NUMPY)
        raise ValueError(
            f"Unsupported numpy dtype {array.dtype}; convert to one of {supported} or str."
        )
    content = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, tensor_content=content)


def validate_tensor_proto(proto: tensor_pb2.TensorProto, name: str = "TensorProto") -> List[int]:
    """Check that proto's values fill its shape, without building the array, and return the shape.

    Accepts `tensor_content` of exactly size * itemsize bytes, exactly one typed value per
    element, or one typed value to fill a shape of at most MAX_BROADCAST_ELEMENTS elements.
    Raises ValueError naming `name`, the declared shape and the number of values.

    NOTE: TensorFlow pads a typed value field that is shorter than the shape by repeating
    its last value, and fills an empty one with zeros (FromProtoField in
    tensorflow/core/framework/tensor.cc, and MakeNdarray in TF 2.16's tensor_util.py).
    This check is stricter and rejects every count other than size and 1, because
    padding hides a client bug.
    """
    if proto.dtype not in _NUMPY_BY_DTYPE:
        raise ValueError(f"{name} has unsupported dtype {dtype_name(proto.dtype)}.")
    if proto.tensor_shape.unknown_rank:
        raise ValueError(f"{name} has a shape of unknown rank; send a fully defined shape.")
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if any(size < 0 for size in shape):
        raise ValueError(f"{name} has shape {shape} with a negative size; send a fully defined shape.")
    size = 1
    for dim_size in shape:
        size *= dim_size  # Python integers, so a huge declared shape cannot overflow.

    numpy_dtype, field = _NUMPY_BY_DTYPE[proto.dtype]
    if proto.tensor_content:
        if proto.dtype == types_pb2.DT_STRING:
            raise ValueError(f"{name} is DT_STRING with tensor_content; send the strings in string_val.")
        itemsize = np.dtype(numpy_dtype).itemsize
        if len(proto.tensor_content) != size * itemsize:
            raise ValueError(
                f"{name} has shape {shape} ({size} elements of {itemsize} bytes) but "
                f"{len(proto.tensor_content)} bytes of tensor_content."
            )
        return shape

    count = len(getattr(proto, field))
    if count == size:
        return shape
    if count == 1 and size <= MAX_BROADCAST_ELEMENTS:
        return shape
    if count == 1:
        raise ValueError(
            f"{name} has shape {shape} ({size} elements) and 1 value in {field}; one value "
            f"fills at most {MAX_BROADCAST_ELEMENTS} elements, so send {size} values."
        )
    raise ValueError(
        f"{name} has shape {shape} ({size} elements) but {count} values in {field}; send "
        f"{size} values, or 1 value to fill the shape."
    )


def make_ndarray(proto: tensor_pb2.TensorProto, name: str = "TensorProto") -> np.ndarray:
    """Convert a TensorProto to a numpy array. Strings become an object array of bytes.

    Runs validate_tensor_proto first, so a malformed proto raises ValueError before any
    memory for its declared shape is allocated. Bytes are returned as sent, never decoded.
    """
    shape = validate_tensor_proto(proto, name)
    numpy_dtype, field = _NUMPY_BY_DTYPE[proto.dtype]

    if proto.tensor_content:
        flat = np.frombuffer(proto.tensor_content, dtype=np.dtype(numpy_dtype).newbyteorder("<"))
        return flat.astype(numpy_dtype).reshape(shape)

    values = list(getattr(proto, field))
    if proto.dtype == types_pb2.DT_STRING:
        flat = np.empty(len(values), dtype=object)
        flat[:] = values
    else:
        flat = np.asarray(values, dtype=numpy_dtype)

    if len(flat) == 1 and flat.size != int(np.prod(shape, dtype=np.int64)):
        return np.full(shape, flat[0], dtype=flat.dtype)
    return flat.reshape(shape)


def _to_bytes(item) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    raise ValueError(f"String tensor element {item!r} is neither str nor bytes.")
