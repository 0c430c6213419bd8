// Zero-copy exchange with NumPy and anything speaking DLPack (PyTorch, JAX, ...).
#include <memory>
#include <optional>

#include <nanobind/ndarray.h>

#include "bindings.h"

namespace orchard::python {

namespace {

nb::dlpack::dtype to_dlpack(DType t) {
  using nb::dlpack::dtype_code;
  switch (t) {
    case DType::Bool: return {uint8_t(dtype_code::Bool), 8, 1};
    case DType::Int32: return {uint8_t(dtype_code::Int), 32, 1};
    case DType::Int64: return {uint8_t(dtype_code::Int), 64, 1};
    case DType::Float16: return {uint8_t(dtype_code::Float), 16, 1};
    case DType::BFloat16: return {uint8_t(dtype_code::Bfloat), 16, 1};
    case DType::Float32: return {uint8_t(dtype_code::Float), 32, 1};
    case DType::Float64: return {uint8_t(dtype_code::Float), 64, 1};
  }
  return {};
}

DType from_dlpack_dtype(nb::dlpack::dtype d) {
  using nb::dlpack::dtype_code;
  if (d.lanes == 1) {
    if (d.code == uint8_t(dtype_code::Bool) && d.bits == 8) return DType::Bool;
    if (d.code == uint8_t(dtype_code::Int) && d.bits == 32) return DType::Int32;
    if (d.code == uint8_t(dtype_code::Int) && d.bits == 64) return DType::Int64;
    if (d.code == uint8_t(dtype_code::Float) && d.bits == 16) return DType::Float16;
    if (d.code == uint8_t(dtype_code::Bfloat) && d.bits == 16) return DType::BFloat16;
    if (d.code == uint8_t(dtype_code::Float) && d.bits == 32) return DType::Float32;
    if (d.code == uint8_t(dtype_code::Float) && d.bits == 64) return DType::Float64;
  }
  static const char* kinds[] = {"int", "uint", "float", "opaque", "bfloat", "complex", "bool"};
  const char* kind = d.code < 7 ? kinds[d.code] : "unknown";
  throw DTypeError(detail::concat("unsupported dtype ", kind, int(d.bits), d.lanes == 1 ? "" : " (vector)",
                                  "; Orchard supports bool, int32, int64, float16, bfloat16, float32, float64"));
}

using AnyArray = nb::ndarray<nb::ro>;

// The Orchard device of DLPack memory: the CPU's, or the CUDA device's (the first GPU, the one whose
// primary context Orchard shares with PyTorch and other frameworks).
Device array_device(const AnyArray& arr) {
  if (arr.device_type() == nb::device::cpu::value) return Device::CPU;
  ORCHARD_CHECK(arr.device_type() == nb::device::cuda::value && arr.device_id() == 0, RuntimeError,
                "from_dlpack: only CPU memory and the memory of the first CUDA GPU (cuda:0) can be shared with "
                "Orchard; got DLPack device (", arr.device_type(), ", ", arr.device_id(), "); copy it to one of them first");
  ORCHARD_CHECK(has_runtime(Device::CUDA), RuntimeError,
                "from_dlpack: the array is in CUDA memory, but Orchard's CUDA device is not available here");
  return Device::CUDA;
}

// Wraps the array's memory without copying; the array stays alive until the last view is gone. Work
// queued on CUDA memory is ordered by the legacy default stream, where Orchard's CUDA work runs
// unless a side stream is current, and which DLPack's producers order their export by when the
// consumer names no stream (work on a side stream waits for it through Stream.wait_stream).
Tensor wrap_array(const AnyArray& arr) {
  const Device device = array_device(arr);
  DType dtype = from_dlpack_dtype(arr.dtype());
  Shape shape(arr.ndim());
  Strides strides(arr.ndim());
  int64_t extent = 1;
  bool empty_array = false;
  for (size_t i = 0; i < arr.ndim(); ++i) {
    shape[i] = int64_t(arr.shape(i));
    strides[i] = arr.stride(i);
    if (strides[i] < 0) throw ValueError("arrays with negative strides cannot be shared; pass a copy (a.copy())");
    if (shape[i] == 0) empty_array = true;
    else extent += (shape[i] - 1) * strides[i];
  }
  size_t nbytes = empty_array ? 0 : size_t(extent) * itemsize(dtype);
  // The deleter may run on any thread; it takes the GIL to drop the Python-side owner.
  auto owner = std::make_shared<std::optional<AnyArray>>(arr);
  auto storage = Storage::wrap(device, const_cast<void*>(arr.data()), nbytes, [owner](void*) {
    nb::gil_scoped_acquire gil;
    owner->reset();
  });
  return Tensor::view_of(storage, shape, strides, 0, dtype);
}

// DLPack's device of t's memory: Metal memory is shared storage on unified memory, which the CPU
// reads in place once the queued work is done (as MLX does); CUDA memory is the GPU's.
int dlpack_device(const Tensor& t) {
  return t.device() == Device::CUDA ? nb::device::cuda::value : nb::device::cpu::value;
}

// A view of t's memory as an nb::ndarray, after the work queued on it; the Tensor handle is its owner.
template <typename Framework>
nb::ndarray<Framework> as_ndarray(const Tensor& t) {
  runtime_for(t.device()).synchronize();
  nb::object owner = nb::cast(t);  // keeps the storage alive as long as the array
  std::vector<size_t> shape(t.shape().begin(), t.shape().end());
  return nb::ndarray<Framework>(t.data(), t.ndim(), shape.data(), owner, t.strides().data(), to_dlpack(t.dtype()),
                                dlpack_device(t));
}

// A NumPy array needs memory the CPU can read.
nb::ndarray<nb::numpy> as_numpy(const Tensor& t) {
  ORCHARD_CHECK(t.dtype() != DType::BFloat16, DTypeError, "NumPy has no bfloat16; convert with .float() first");
  ORCHARD_CHECK(t.device() != Device::CUDA, TypeError,
                "can't convert a cuda tensor to a host array: its memory is the GPU's; copy it with .cpu() first");
  return as_ndarray<nb::numpy>(t);
}

}  // namespace

void bind_interop(nb::module_& m, nb::class_<Tensor>& cls) {
  m.def("from_numpy", [](nb::handle a) {
    nb::object np = nb::module_::import_("numpy");
    if (!nb::isinstance(a, np.attr("ndarray")))
      throw TypeError(detail::concat("from_numpy: expected a numpy.ndarray, got ", nb::inst_name(a).c_str()));
    AnyArray arr;
    if (!nb::try_cast(a, arr)) {  // byte-swapped, structured or text dtypes; strides off the item size
      nb::object dt = a.attr("dtype");
      std::string kind = nb::cast<std::string>(dt.attr("kind"));
      if (!nb::cast<bool>(dt.attr("isnative")) || kind.find_first_of("biuf") == std::string::npos)
        throw DTypeError(detail::concat("from_numpy: unsupported dtype ", nb::str(dt).c_str(), "; Orchard supports bool, "
                                       "int32, int64, float16, float32, float64 in native byte order"));
      throw ValueError(detail::concat("from_numpy: cannot share an array whose byte strides ",
                                      nb::str(a.attr("strides")).c_str(), " are not multiples of its item size ",
                                      nb::cast<int64_t>(dt.attr("itemsize")), "; pass a copy (a.copy())"));
    }
    return wrap_array(arr);
  }, nb::arg("array"), "A tensor sharing memory with a NumPy array (no copy)");

  m.def("from_dlpack", [](nb::handle obj) {
    AnyArray arr;
    if (!nb::try_cast(obj, arr))
      throw TypeError(detail::concat("from_dlpack: ", nb::inst_name(obj).c_str(),
                                     " does not support the DLPack protocol"));
    return wrap_array(arr);
  }, nb::arg("obj"), "A tensor sharing memory with any object supporting __dlpack__ (no copy)");

  cls.def("numpy", &as_numpy, "A NumPy array sharing this tensor's memory");

  // NumPy's protocol: copy=None shares memory when it can, copy=True always copies (np.array(t)),
  // copy=False never does (NumPy raises when a dtype conversion would need one).
  cls.def("__array__", [](const Tensor& t, nb::handle dtype, nb::handle copy) {
    nb::object arr = nb::cast(as_numpy(t));
    nb::module_ np = nb::module_::import_("numpy");
    if (copy.is_none()) return np.attr("asarray")(arr, dtype);
    return np.attr("array")(arr, dtype, nb::arg("copy") = copy);
  }, nb::arg("dtype") = nb::none(), nb::arg("copy") = nb::none());

  cls.def("__dlpack__", [](const Tensor& t, nb::kwargs kwargs) {
    nb::object arr = nb::cast(as_ndarray<nb::array_api>(t));
    return arr.attr("__dlpack__")(**kwargs);
  });
  cls.def("__dlpack_device__", [](const Tensor& t) { return nb::make_tuple(dlpack_device(t), 0); });
}

}  // namespace orchard::python
