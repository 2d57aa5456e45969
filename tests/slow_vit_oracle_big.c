/* tests/slow_vit_oracle_big.c — the PyTorch oracle check of tests/test_vit_oracle.c at the
 * presets' real shapes (generated with VITA_ORACLE_BIG=1 by make test-slow): ViT-S/16 at 224²
 * (12 blocks), ProViCNet's 448² input with registers, slice tokens and LayerScale (1031
 * tokens), ProFound's 64x256x256 volume with 16x32x32x3 patches (rows of 49152 values). Same
 * thresholds: max(1e-10, 10 x PyTorch's own fp32 NMSE). */
#define VIT_ORACLE_CONFIGS {"big_vit_s16", "big_provicnet", "big_profound"}
#include "test_vit_oracle.c"
