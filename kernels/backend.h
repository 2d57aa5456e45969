/* kernels/backend.h — a backend is a table of function pointers with the exact signatures
 * of kernels/ops.h. VITA_OPS lists every op once; the table type, the CPU declarations and
 * the CPU table are generated from it, so a signature is written only in ops.h. */
#ifndef VITA_BACKEND_H
#define VITA_BACKEND_H

#include "ops.h"

#define VITA_OPS(X)                                                                  \
    X(patchify_forward) X(unpatchify_forward)                                         \
    X(tokens_concat_forward) X(tokens_concat_backward)                                \
    X(pos_embed_add_forward) X(pos_embed_add_backward)                                \
    X(pos_resample_forward) X(pos_resample_backward)                                  \
    X(layernorm_forward) X(layernorm_backward)                                        \
    X(linear_forward) X(linear_backward)                                              \
    X(attention_forward) X(attention_backward)                                        \
    X(gelu_forward) X(gelu_backward) X(add_forward)                                   \
    X(layerscale_forward) X(layerscale_backward) X(drop_path_forward) X(scale_inplace) \
    X(meanpool_forward) X(meanpool_backward)                                          \
    X(crossentropy_forward) X(crossentropy_backward)                                  \
    X(adamw_update) X(sumsq)                                                          \
    X(mmd_stats) X(mmd_center) X(sqdist_forward)                                      \
    X(conv3d_forward) X(conv3d_backward) X(convT_forward) X(convT_backward)           \
    X(instnorm_forward) X(instnorm_backward) X(batchnorm_forward) X(batchnorm_backward) \
    X(leaky_relu_forward) X(leaky_relu_backward) X(upsample_forward) X(upsample_backward) \
    X(concat_channels_forward) X(concat_channels_backward)                            \
    X(tokens_to_grid_forward) X(tokens_to_grid_backward)                              \
    X(resample_axis_forward) X(resample_axis_backward)                                \
    X(softmax_channels_forward) X(dice_ce_forward) X(dice_ce_backward)                \
    X(cls_loss_forward) X(cls_loss_backward) X(regress_loss_forward) X(regress_loss_backward)  \
    X(tokens_gather_forward) X(tokens_gather_backward)                                \
    X(tokens_unshuffle_forward) X(tokens_unshuffle_backward)                          \
    X(mae_loss_forward) X(mae_loss_backward) X(l2norm_forward) X(l2norm_backward)      \
    X(infonce_forward) X(infonce_backward)

struct Backend {
    const char* name;
    int  (*open)(Ctx* c);
    void (*close)(Ctx* c);
    void* (*alloc)(Ctx* c, size_t bytes);
    void (*free)(Ctx* c, void* p);
    void (*zero)(Ctx* c, void* p, size_t bytes);
    void (*h2d)(Ctx* c, void* dst, const void* src, size_t bytes);
    void (*d2h)(Ctx* c, void* dst, const void* src, size_t bytes);
    void (*d2d)(Ctx* c, void* dst, const void* src, size_t bytes);
    void (*sync)(Ctx* c);
#define VITA_OP_FIELD(name) __typeof__(name)* name;
    VITA_OPS(VITA_OP_FIELD)
#undef VITA_OP_FIELD
};

extern const Backend vita_cpu_backend;
#ifdef VITA_CUDA
extern const Backend vita_cuda_backend;
int vita_cuda_device_count(void);
#endif

#endif
