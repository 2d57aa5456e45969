/* tests/vit_fixture.h — the small 3D ViT the alignment and feature tests share (header only):
 * vit-tiny-3d shrunk to an 8x16x16 image with 4x8x8 patches (2x2x2 = 8 tokens), width 24,
 * depth 3, 3 heads, so a whole model runs in milliseconds. */
#ifndef VITA_TESTS_VIT_FIXTURE_H
#define VITA_TESTS_VIT_FIXTURE_H

#include <stdio.h>
#include "../models/vit.h"

static inline VitConfig t_tiny_vit_cfg(void) {
    VitConfig c;
    vit_preset(&c, "vit-tiny-3d");
    snprintf(c.preset, sizeof c.preset, "test");
    c.img[0] = 8; c.img[1] = 16; c.img[2] = 16;
    c.patch[0] = 4; c.patch[1] = c.patch[2] = 8;
    c.dim = 24; c.depth = 3; c.heads = 3;
    return c;
}

#endif
