/* engine/sampler.h — crop sampling and epoch orders (seeded, pure functions).
 *
 * Crops follow MONAI's RandCropByPosNegLabel: with probability pos_fraction the crop is centred
 * on a uniformly drawn foreground voxel, otherwise on a uniformly drawn background voxel; the
 * centre is then clamped so that the crop fits (start = centre - crop/2 clamped to
 * [0, dim - crop]); along an axis where the volume is smaller than the crop the crop is centred
 * with zero padding, start = -((crop - dim) / 2) (MONAI SpatialPad, symmetric). When a case has
 * no foreground (or no background) the other kind is used. */
#ifndef VITA_SAMPLER_H
#define VITA_SAMPLER_H

#include <stdint.h>

#include "rng.h"

/* start of a crop around centre (see above) */
void crop_start(const int dims[3], const int crop[3], const int centre[3], int start[3]);

/* draws a centre voxel. lab [D,H,W] may be NULL (uniform centre). fg_label >= 0: foreground
 * means lab == fg_label; fg_label < 0: lab > 0. Returns 1 if the centre is foreground. */
int crop_pick_centre(Rng* r, const int dims[3], const uint8_t* lab, int fg_label,
                     double pos_fraction, int centre[3]);

/* a seeded permutation of 0..n-1 for the epoch (Fisher-Yates on rng_stream(seed, epoch tag)) */
void order_shuffled(int n, uint64_t seed, long epoch, int* out);

/* class-balanced order of length len over items 0..n-1 with labels cls[i] in [0, n_classes)
 * (others never drawn): the slots are dealt to the non-empty classes in turn (each class gets
 * len/K or len/K + 1 slots, K = non-empty classes), the slot sequence is shuffled, and each
 * class's slots take its items from a shuffled list, reshuffled whenever it runs out.
 * Returns K (0: nothing to draw, out untouched). */
int order_balanced(int n, const int32_t* cls, int n_classes, int len, uint64_t seed, long epoch,
                   int* out);

#endif
