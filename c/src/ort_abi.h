/*
 * ort_abi.h -- the part of ONNX Runtime's C ABI that libtransalign calls.
 *
 * With -DTA_ORT_HEADERS (the build sets it when ONNXRUNTIME_ROOT is given) this includes the
 * official <onnxruntime_c_api.h> and nothing below is used. Without it (the onnxruntime Python
 * wheel ships libonnxruntime.so but no headers) the declarations below are a transcription,
 * written for this project, of the public, documented ABI of ONNX Runtime's C API:
 *
 *   - the exported function OrtGetApiBase() returns an OrtApiBase {GetApi, GetVersionString};
 *   - GetApi(version) returns the OrtApi table: a struct of function pointers that is
 *     append-only across releases (entries are never moved or removed), so a program built
 *     against API version N runs with every library whose ORT_API_VERSION >= N.
 *
 * Only the entries called here are declared with their signatures; the others are kept as
 * `void *` placeholders so that every declared entry sits at its index in the table (the
 * comment gives it). TA_ORT_API_VERSION (11: ONNX Runtime 1.11, the first release with every
 * entry used here) is what we ask GetApi for; the loader checks the table at run time by a
 * CreateStatus / GetErrorCode / GetErrorMessage round trip before using it.
 * Enum values are those of the public header.
 */
#ifndef TA_ORT_ABI_H
#define TA_ORT_ABI_H

#define TA_ORT_API_VERSION 11

#ifdef TA_ORT_HEADERS
#include <onnxruntime_c_api.h>
#else

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#define NO_EXCEPTION noexcept
#else
#define NO_EXCEPTION
#endif

#define ORT_API_CALL
typedef char ORTCHAR_T;

typedef struct OrtEnv OrtEnv;
typedef struct OrtStatus OrtStatus;
typedef struct OrtMemoryInfo OrtMemoryInfo;
typedef struct OrtSession OrtSession;
typedef struct OrtValue OrtValue;
typedef struct OrtRunOptions OrtRunOptions;
typedef struct OrtTypeInfo OrtTypeInfo;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtAllocator OrtAllocator;
typedef struct OrtCUDAProviderOptionsV2 OrtCUDAProviderOptionsV2;

typedef enum OrtErrorCode {
    ORT_OK, ORT_FAIL, ORT_INVALID_ARGUMENT, ORT_NO_SUCHFILE, ORT_NO_MODEL, ORT_ENGINE_ERROR,
    ORT_RUNTIME_EXCEPTION, ORT_INVALID_PROTOBUF, ORT_MODEL_LOADED, ORT_NOT_IMPLEMENTED,
    ORT_INVALID_GRAPH, ORT_EP_FAIL
} OrtErrorCode;

typedef enum OrtLoggingLevel {
    ORT_LOGGING_LEVEL_VERBOSE, ORT_LOGGING_LEVEL_INFO, ORT_LOGGING_LEVEL_WARNING,
    ORT_LOGGING_LEVEL_ERROR, ORT_LOGGING_LEVEL_FATAL
} OrtLoggingLevel;

typedef enum GraphOptimizationLevel {
    ORT_DISABLE_ALL = 0, ORT_ENABLE_BASIC = 1, ORT_ENABLE_EXTENDED = 2, ORT_ENABLE_ALL = 99
} GraphOptimizationLevel;

typedef enum ONNXTensorElementDataType {
    ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED = 0, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT = 1,
    ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 = 7, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 = 10
} ONNXTensorElementDataType;

typedef enum OrtAllocatorType { OrtInvalidAllocator = -1, OrtDeviceAllocator = 0, OrtArenaAllocator = 1 } OrtAllocatorType;
typedef enum OrtMemType { OrtMemTypeCPUInput = -2, OrtMemTypeCPUOutput = -1, OrtMemTypeDefault = 0 } OrtMemType;

struct OrtApi {
    /*   0 */ OrtStatus *(ORT_API_CALL *CreateStatus)(OrtErrorCode code, const char *msg) NO_EXCEPTION;
    /*   1 */ OrtErrorCode(ORT_API_CALL *GetErrorCode)(const OrtStatus *status) NO_EXCEPTION;
    /*   2 */ const char *(ORT_API_CALL *GetErrorMessage)(const OrtStatus *status) NO_EXCEPTION;
    /*   3 */ OrtStatus *(ORT_API_CALL *CreateEnv)(OrtLoggingLevel log_severity_level, const char *logid, OrtEnv **out) NO_EXCEPTION;
    /*   4 */ void *unused_4_6[3];
    /*   7 */ OrtStatus *(ORT_API_CALL *CreateSession)(const OrtEnv *env, const ORTCHAR_T *model_path, const OrtSessionOptions *options, OrtSession **out) NO_EXCEPTION;
    /*   8 */ void *unused_8_8[1];
    /*   9 */ OrtStatus *(ORT_API_CALL *Run)(OrtSession *session, const OrtRunOptions *run_options, const char *const *input_names, const OrtValue *const *inputs, size_t input_len, const char *const *output_names, size_t output_names_len, OrtValue **outputs) NO_EXCEPTION;
    /*  10 */ OrtStatus *(ORT_API_CALL *CreateSessionOptions)(OrtSessionOptions **options) NO_EXCEPTION;
    /*  11 */ void *unused_11_21[11];
    /*  22 */ OrtStatus *(ORT_API_CALL *SetSessionLogSeverityLevel)(OrtSessionOptions *options, int session_log_severity_level) NO_EXCEPTION;
    /*  23 */ OrtStatus *(ORT_API_CALL *SetSessionGraphOptimizationLevel)(OrtSessionOptions *options, GraphOptimizationLevel graph_optimization_level) NO_EXCEPTION;
    /*  24 */ OrtStatus *(ORT_API_CALL *SetIntraOpNumThreads)(OrtSessionOptions *options, int intra_op_num_threads) NO_EXCEPTION;
    /*  25 */ OrtStatus *(ORT_API_CALL *SetInterOpNumThreads)(OrtSessionOptions *options, int inter_op_num_threads) NO_EXCEPTION;
    /*  26 */ void *unused_26_29[4];
    /*  30 */ OrtStatus *(ORT_API_CALL *SessionGetInputCount)(const OrtSession *session, size_t *out) NO_EXCEPTION;
    /*  31 */ OrtStatus *(ORT_API_CALL *SessionGetOutputCount)(const OrtSession *session, size_t *out) NO_EXCEPTION;
    /*  32 */ void *unused_32_35[4];
    /*  36 */ OrtStatus *(ORT_API_CALL *SessionGetInputName)(const OrtSession *session, size_t index, OrtAllocator *allocator, char **value) NO_EXCEPTION;
    /*  37 */ OrtStatus *(ORT_API_CALL *SessionGetOutputName)(const OrtSession *session, size_t index, OrtAllocator *allocator, char **value) NO_EXCEPTION;
    /*  38 */ void *unused_38_48[11];
    /*  49 */ OrtStatus *(ORT_API_CALL *CreateTensorWithDataAsOrtValue)(const OrtMemoryInfo *info, void *p_data, size_t p_data_len, const int64_t *shape, size_t shape_len, ONNXTensorElementDataType type, OrtValue **out) NO_EXCEPTION;
    /*  50 */ void *unused_50_50[1];
    /*  51 */ OrtStatus *(ORT_API_CALL *GetTensorMutableData)(OrtValue *value, void **out) NO_EXCEPTION;
    /*  52 */ void *unused_52_59[8];
    /*  60 */ OrtStatus *(ORT_API_CALL *GetTensorElementType)(const OrtTensorTypeAndShapeInfo *info, ONNXTensorElementDataType *out) NO_EXCEPTION;
    /*  61 */ OrtStatus *(ORT_API_CALL *GetDimensionsCount)(const OrtTensorTypeAndShapeInfo *info, size_t *out) NO_EXCEPTION;
    /*  62 */ OrtStatus *(ORT_API_CALL *GetDimensions)(const OrtTensorTypeAndShapeInfo *info, int64_t *dim_values, size_t dim_values_length) NO_EXCEPTION;
    /*  63 */ void *unused_63_64[2];
    /*  65 */ OrtStatus *(ORT_API_CALL *GetTensorTypeAndShape)(const OrtValue *value, OrtTensorTypeAndShapeInfo **out) NO_EXCEPTION;
    /*  66 */ void *unused_66_68[3];
    /*  69 */ OrtStatus *(ORT_API_CALL *CreateCpuMemoryInfo)(enum OrtAllocatorType type, enum OrtMemType mem_type, OrtMemoryInfo **out) NO_EXCEPTION;
    /*  70 */ void *unused_70_75[6];
    /*  76 */ OrtStatus *(ORT_API_CALL *AllocatorFree)(OrtAllocator *ort_allocator, void *p) NO_EXCEPTION;
    /*  77 */ void *unused_77_77[1];
    /*  78 */ OrtStatus *(ORT_API_CALL *GetAllocatorWithDefaultOptions)(OrtAllocator **out) NO_EXCEPTION;
    /*  79 */ void *unused_79_91[13];
    /*  92 */ void(ORT_API_CALL *ReleaseEnv)(OrtEnv *input);
    /*  93 */ void(ORT_API_CALL *ReleaseStatus)(OrtStatus *input);
    /*  94 */ void(ORT_API_CALL *ReleaseMemoryInfo)(OrtMemoryInfo *input);
    /*  95 */ void(ORT_API_CALL *ReleaseSession)(OrtSession *input);
    /*  96 */ void(ORT_API_CALL *ReleaseValue)(OrtValue *input);
    /*  97 */ void(ORT_API_CALL *ReleaseRunOptions)(OrtRunOptions *input);
    /*  98 */ void(ORT_API_CALL *ReleaseTypeInfo)(OrtTypeInfo *input);
    /*  99 */ void(ORT_API_CALL *ReleaseTensorTypeAndShapeInfo)(OrtTensorTypeAndShapeInfo *input);
    /* 100 */ void(ORT_API_CALL *ReleaseSessionOptions)(OrtSessionOptions *input);
    /* 101 */ void *unused_101_124[24];
    /* 125 */ OrtStatus *(ORT_API_CALL *GetAvailableProviders)(char ***out_ptr, int *provider_length) NO_EXCEPTION;
    /* 126 */ OrtStatus *(ORT_API_CALL *ReleaseAvailableProviders)(char **ptr, int providers_length) NO_EXCEPTION;
    /* 127 */ void *unused_127_203[77];
    /* 204 */ OrtStatus *(ORT_API_CALL *SessionOptionsAppendExecutionProvider_CUDA_V2)(OrtSessionOptions *options, const OrtCUDAProviderOptionsV2 *cuda_options) NO_EXCEPTION;
    /* 205 */ OrtStatus *(ORT_API_CALL *CreateCUDAProviderOptions)(OrtCUDAProviderOptionsV2 **out) NO_EXCEPTION;
    /* 206 */ void *unused_206_207[2];
    /* 208 */ void(ORT_API_CALL *ReleaseCUDAProviderOptions)(OrtCUDAProviderOptionsV2 *input);
};
typedef struct OrtApi OrtApi;

struct OrtApiBase {
    const OrtApi *(ORT_API_CALL *GetApi)(uint32_t version) NO_EXCEPTION;
    const char *(ORT_API_CALL *GetVersionString)(void) NO_EXCEPTION;
};
typedef struct OrtApiBase OrtApiBase;

#ifdef __cplusplus
}
#endif

#endif /* TA_ORT_HEADERS */
#endif /* TA_ORT_ABI_H */
