"""Conversion between numpy arrays and TensorProto without importing TensorFlow ops.

The client uses these instead of `tf.make_tensor_proto` / `tf.make_ndarray` so it needs
only grpc, tensorflow-serving-api and numpy. The protos come from tensorflow-serving-api,
which itself imports the `tensorflow` package for the `tensorflow.core` protos.
"""

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


def make_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Convert a TensorProto to a numpy array. Strings become an object array of bytes.

    Reads `tensor_content` or the typed value field. A typed field with one value and a
    larger shape is broadcast, as TensorFlow does.
    """
    if proto.dtype not in _NUMPY_BY_DTYPE:
        raise ValueError(f"Unsupported tensor dtype {dtype_name(proto.dtype)}.")

    numpy_dtype, field = _NUMPY_BY_DTYPE[proto.dtype]
    shape = [dim.size for dim in proto.tensor_shape.dim]
    size = int(np.prod(shape, dtype=np.int64))

    if proto.tensor_content and proto.dtype != types_pb2.DT_STRING:
        flat = np.frombuffer(proto.tensor_content, dtype=np.dtype(numpy_dtype).newbyteorder("<"))
        return flat.astype(numpy_dtype).reshape(shape)

    values = list(getattr(proto, field))
    if proto.dtype == types_pb2.DT_STRING:
        flat = np.empty(len(values), dtype=object)
        flat[:] = values
    else:
        flat = np.asarray(values, dtype=numpy_dtype)

    if len(flat) == size:
        return flat.reshape(shape)
    if len(flat) == 1:
        return np.full(shape, flat[0], dtype=flat.dtype)
    if len(flat) == 0:
        # An empty value field means every element has the default value of the dtype.
        default = b"" if proto.dtype == types_pb2.DT_STRING else numpy_dtype(0)
        return np.full(shape, default, dtype=flat.dtype)
    raise ValueError(
        f"TensorProto has {len(flat)} values in {field} but its shape {shape} needs {size}."
    )


def _to_bytes(item) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    raise ValueError(f"String tensor element {item!r} is neither str nor bytes.")
