// ONNX Runtime through its C API, loaded with dlopen (see ort_abi.h for where the declarations
// come from). The library handle, its API table and one OrtEnv are process-wide and loaded once
// (the only global state of libtransalign); sessions are per ta_aligner.
#include <cstdlib>
#include <cstring>
#include <cstddef>
#include <dlfcn.h>
#include <mutex>

#include "internal.hpp"
#include "ort_abi.h"

#ifndef TA_DEFAULT_ORT_LIB
#define TA_DEFAULT_ORT_LIB "libonnxruntime.so"
#endif

// The transcribed table must put every entry at its index of the public ABI; with the official
// header this checks our indices against it.
static_assert(offsetof(OrtApi, Run) == 9 * sizeof(void *), "OrtApi layout");
static_assert(offsetof(OrtApi, CreateTensorWithDataAsOrtValue) == 49 * sizeof(void *), "OrtApi layout");
static_assert(offsetof(OrtApi, GetAllocatorWithDefaultOptions) == 78 * sizeof(void *), "OrtApi layout");
static_assert(offsetof(OrtApi, ReleaseSessionOptions) == 100 * sizeof(void *), "OrtApi layout");
static_assert(offsetof(OrtApi, GetAvailableProviders) == 125 * sizeof(void *), "OrtApi layout");
static_assert(offsetof(OrtApi, SessionOptionsAppendExecutionProvider_CUDA_V2) == 204 * sizeof(void *), "OrtApi layout");
static_assert(offsetof(OrtApi, ReleaseCUDAProviderOptions) == 208 * sizeof(void *), "OrtApi layout");

namespace ta {

namespace {

struct Runtime {
    void *library = nullptr;
    const OrtApi *api = nullptr;
    OrtEnv *env = nullptr;
    std::string path, version;
};

std::mutex runtime_mutex;
Runtime runtime;

[[noreturn]] void fail(const OrtApi *api, OrtStatus *status, const std::string &what) {
    std::string message = what + ": " + (status ? api->GetErrorMessage(status) : "unknown error");
    if (status) api->ReleaseStatus(status);
    throw Error(TA_ERR_RUNTIME, "ONNX Runtime " + message);
}

void check(const OrtApi *api, OrtStatus *status, const char *what) {
    if (status) fail(api, status, what);
}

// Load libonnxruntime once: `requested`, else $TRANSALIGN_ORT_LIB, else the build's default.
const Runtime &load_runtime(const char *requested) {
    std::lock_guard<std::mutex> lock(runtime_mutex);
    if (runtime.api) return runtime;
    const char *env_path = std::getenv("TRANSALIGN_ORT_LIB");
    std::string path = requested && *requested ? requested : env_path && *env_path ? env_path : TA_DEFAULT_ORT_LIB;
    void *library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        const char *why = dlerror();
        throw Error(TA_ERR_RUNTIME, "cannot load ONNX Runtime from " + path + " (" + (why ? why : "?") +
                                    "); set TRANSALIGN_ORT_LIB or ta_open_options.ort_library to libonnxruntime.so");
    }
    typedef const OrtApiBase *(*GetApiBase)(void);
    GetApiBase get_base = reinterpret_cast<GetApiBase>(dlsym(library, "OrtGetApiBase"));
    const OrtApiBase *base = get_base ? get_base() : nullptr;
    const OrtApi *api = base ? base->GetApi(TA_ORT_API_VERSION) : nullptr;
    if (!api) {
        std::string version = base ? base->GetVersionString() : "?";
        dlclose(library);
        throw Error(TA_ERR_RUNTIME, path + " (ONNX Runtime " + version + ") does not provide C API version " +
                                    std::to_string(TA_ORT_API_VERSION) + "; use ONNX Runtime 1.11 or newer");
    }
    // the table is what we think it is: a status round trip through entries 0, 1, 2 and 93
    OrtStatus *probe = api->CreateStatus(ORT_INVALID_ARGUMENT, "transalign-probe");
    bool ok = probe && api->GetErrorCode(probe) == ORT_INVALID_ARGUMENT &&
              std::strcmp(api->GetErrorMessage(probe), "transalign-probe") == 0;
    if (probe) api->ReleaseStatus(probe);
    if (!ok) {
        dlclose(library);
        throw Error(TA_ERR_RUNTIME, path + " does not behave like the ONNX Runtime C API (status probe failed)");
    }
    OrtEnv *env = nullptr;
    OrtStatus *status = api->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "transalign", &env);
    if (status) {
        std::string message = api->GetErrorMessage(status);
        api->ReleaseStatus(status);
        dlclose(library);
        throw Error(TA_ERR_RUNTIME, "ONNX Runtime CreateEnv: " + message);
    }
    runtime.library = library;
    runtime.api = api;
    runtime.env = env;
    runtime.path = path;
    runtime.version = base->GetVersionString();
    return runtime;
}

float half_to_float(uint16_t h) {
    const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal
            int e = -1;
            uint32_t m = mant;
            do {
                ++e;
                m <<= 1;
            } while (!(m & 0x400));
            bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (m & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | mant << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | mant << 13;
    }
    float out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
}

}  // namespace

bool cuda_available(const char *library) {
    const Runtime &rt = load_runtime(library);
    char **names = nullptr;
    int count = 0;
    check(rt.api, rt.api->GetAvailableProviders(&names, &count), "GetAvailableProviders");
    bool found = false;
    for (int k = 0; k < count; ++k)
        if (std::strcmp(names[k], "CUDAExecutionProvider") == 0) found = true;
    OrtStatus *status = rt.api->ReleaseAvailableProviders(names, count);
    if (status) rt.api->ReleaseStatus(status);
    return found;
}

struct Session::Impl {
    const OrtApi *api = nullptr;
    OrtSession *session = nullptr;
    OrtMemoryInfo *memory = nullptr;
};

Session::Session(const std::string &model_path, const std::string &provider, int threads, const char *library)
    : impl_(new Impl) {
    const Runtime &rt = load_runtime(library);
    const OrtApi *api = rt.api;
    impl_->api = api;
    OrtSessionOptions *options = nullptr;
    check(api, api->CreateSessionOptions(&options), "CreateSessionOptions");
    struct Guard {
        const OrtApi *api;
        OrtSessionOptions *options;
        ~Guard() { api->ReleaseSessionOptions(options); }
    } guard{api, options};
    // as transalign/engine/session.py: all graph optimizations, errors only, threads if given
    check(api, api->SetSessionGraphOptimizationLevel(options, ORT_ENABLE_ALL), "SetSessionGraphOptimizationLevel");
    check(api, api->SetSessionLogSeverityLevel(options, 3), "SetSessionLogSeverityLevel");
    if (threads > 0) {
        check(api, api->SetIntraOpNumThreads(options, threads), "SetIntraOpNumThreads");
        check(api, api->SetInterOpNumThreads(options, 1), "SetInterOpNumThreads");
    }
    if (provider == "cuda") {
        OrtCUDAProviderOptionsV2 *cuda = nullptr;
        check(api, api->CreateCUDAProviderOptions(&cuda), "CreateCUDAProviderOptions");
        OrtStatus *status = api->SessionOptionsAppendExecutionProvider_CUDA_V2(options, cuda);
        api->ReleaseCUDAProviderOptions(cuda);
        check(api, status, "SessionOptionsAppendExecutionProvider_CUDA_V2");
    }
    check(api, api->CreateSession(rt.env, model_path.c_str(), options, &impl_->session),
          ("CreateSession(" + model_path + ")").c_str());
    OrtStatus *status = api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &impl_->memory);
    if (status) {
        api->ReleaseSession(impl_->session);
        fail(api, status, "CreateCpuMemoryInfo");
    }
}

Session::~Session() {
    if (impl_->memory) impl_->api->ReleaseMemoryInfo(impl_->memory);
    if (impl_->session) impl_->api->ReleaseSession(impl_->session);
}

void Session::run(const std::vector<int64_t> &ids, const std::vector<int64_t> &mask, int64_t batch, int64_t width,
                  int64_t hidden_size, std::vector<float> &out) const {
    const OrtApi *api = impl_->api;
    const int64_t shape[2] = {batch, width};
    OrtValue *inputs[2] = {nullptr, nullptr};
    OrtValue *output = nullptr;
    OrtTensorTypeAndShapeInfo *info = nullptr;
    struct Guard {
        const OrtApi *api;
        OrtValue **inputs, **output;
        OrtTensorTypeAndShapeInfo **info;
        ~Guard() {
            for (int k = 0; k < 2; ++k)
                if (inputs[k]) api->ReleaseValue(inputs[k]);
            if (*output) api->ReleaseValue(*output);
            if (*info) api->ReleaseTensorTypeAndShapeInfo(*info);
        }
    } guard{api, inputs, &output, &info};
    const size_t bytes = ids.size() * sizeof(int64_t);
    check(api, api->CreateTensorWithDataAsOrtValue(impl_->memory, const_cast<int64_t *>(ids.data()), bytes, shape, 2,
                                                   ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, &inputs[0]),
          "CreateTensorWithDataAsOrtValue");
    check(api, api->CreateTensorWithDataAsOrtValue(impl_->memory, const_cast<int64_t *>(mask.data()), bytes, shape, 2,
                                                   ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, &inputs[1]),
          "CreateTensorWithDataAsOrtValue");
    const char *input_names[2] = {"input_ids", "attention_mask"};
    const char *output_names[1] = {"hidden"};
    check(api, api->Run(impl_->session, nullptr, input_names, inputs, 2, output_names, 1, &output), "Run");
    check(api, api->GetTensorTypeAndShape(output, &info), "GetTensorTypeAndShape");
    ONNXTensorElementDataType type;
    size_t rank = 0;
    check(api, api->GetTensorElementType(info, &type), "GetTensorElementType");
    check(api, api->GetDimensionsCount(info, &rank), "GetDimensionsCount");
    int64_t dims[3] = {0, 0, 0};
    if (rank == 3) check(api, api->GetDimensions(info, dims, 3), "GetDimensions");
    if (rank != 3 || dims[0] != batch || dims[1] != width || dims[2] != hidden_size)
        throw Error(TA_ERR_BUNDLE, "the encoder's output 'hidden' does not have the shape [batch, seq, hidden_size] "
                                   "the manifest promises; export the bundle again");
    void *data = nullptr;
    check(api, api->GetTensorMutableData(output, &data), "GetTensorMutableData");
    const size_t count = static_cast<size_t>(batch * width * hidden_size);
    out.resize(count);
    if (type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        std::memcpy(out.data(), data, count * sizeof(float));
    } else if (type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16) {
        const uint16_t *half = static_cast<const uint16_t *>(data);
        for (size_t k = 0; k < count; ++k) out[k] = half_to_float(half[k]);
    } else {
        throw Error(TA_ERR_BUNDLE, "the encoder's output 'hidden' is neither float32 nor float16");
    }
}

}  // namespace ta
