/* engine/dataset.h — the vita dataset file (SPEC.md §2, HDF5, format "vita-dataset" v1):
 * open with validation, per-case reads (one chunk per case), and the metadata a loader needs.
 * Writing (phantoms, importers) goes through dataset_create / dataset_write_case.
 * All memory here is host memory; the loader copies batches to the device. */
#ifndef VITA_DATASET_H
#define VITA_DATASET_H

#include <stddef.h>
#include <stdint.h>

#define DS_MAX_CHANNELS 8
#define DS_MAX_LABELS 16
#define DS_NAME 32

enum { SPLIT_TRAIN = 0, SPLIT_VAL = 1, SPLIT_TEST = 2, SPLIT_PROBE = 3 };

typedef struct Dataset {
    char path[1024];
    long long hid_file;        /* hid_t of the open file (HDF5 types kept out of the header) */
    int n;                     /* cases */
    int C, D, H, W;            /* common grid */
    char channels[DS_MAX_CHANNELS][DS_NAME];
    int n_labels;              /* label_names, e.g. background,tz,pz,lesion */
    char label_names[DS_MAX_LABELS][DS_NAME];
    int n_classes;             /* class_names of /cls */
    char class_names[DS_MAX_LABELS][DS_NAME];
    double spacing_zyx[3];
    int has_seg, has_cls, images_int16;
    int32_t* cls;              /* [n], -1 unknown (NULL without /cls) */
    uint8_t* split;            /* [n] */
    int8_t* fold;              /* [n] */
    uint8_t* channel_present;  /* [n, C] */
    char (*case_id)[64];       /* [n] */
    double *g_spacing, *g_origin, *g_direction;   /* [n,3], [n,3], [n,9] */
    int32_t *g_shape_original, *g_crop_offset;    /* [n,3], [n,3] */
    double* g_grid_spacing;    /* [n,3] /geometry/grid_spacing (engine/volume.h), NULL = g_spacing */
    int n_targets;             /* /targets/<k> names */
    char targets[4][DS_NAME];
    int serialize;             /* HDF5 not thread-safe: callers must hold the lock */
} Dataset;

/* opens and validates (SPEC.md §2); returns 0, or 1 with one line in err naming the file and
 * the dataset/case/field at fault and the fix */
int dataset_open(Dataset* ds, const char* path, char* err, size_t errlen);
void dataset_close(Dataset* ds);
/* reads case i: img [C, D, H, W] float (int16 converted), seg [D, H, W] (NULL skips / when
 * absent). Thread-safe: serialised internally when HDF5 is not thread-safe. */
int dataset_read_case(Dataset* ds, int i, float* img, uint8_t* seg, char* err, size_t errlen);
/* reads /targets/<name> for case i into out [C', D', H', W'] (dims returned); 1 if absent */
int dataset_read_target(Dataset* ds, int i, const char* name, float* out, int dims[4],
                        char* err, size_t errlen);
/* spacing (z,y,x mm) of case i's stored array: /geometry/grid_spacing when present (the import
 * resampled it), else /geometry/spacing, else the root spacing_zyx (engine/volume.h) */
const double* dataset_case_spacing(const Dataset* ds, int i);
/* channel index by name, -1 if absent */
int dataset_channel(const Dataset* ds, const char* name);
/* prints the schema and a summary (cases per split/fold, label counts) — `vita info D.h5` */
int dataset_print_info(const char* path);

/* The process-wide HDF5 lock (recursive). When HDF5 is not thread-safe (Debian's serial build)
 * every HDF5 call in dataset.c runs under it; other code that calls HDF5 while a loader
 * thread may be reading (e.g. the run log) should wrap its calls in it too. A no-op lock
 * when H5is_library_threadsafe says the library is thread-safe. */
void dataset_h5_lock(void);
void dataset_h5_unlock(void);
int dataset_h5_serialized(void);   /* 1 when the lock serialises HDF5 calls */

/* ---- writing (atomic: temp file + rename on dataset_finish) ---- */
typedef struct {
    int n, C, D, H, W;
    const char* channels;      /* "t2w,adc,hbv" */
    const char* label_names;   /* "background,tz,pz,lesion" (NULL: no /seg) */
    const char* class_names;   /* "benign,csPCa" (NULL: no /cls) */
    double spacing_zyx[3];
    const char* source;        /* e.g. "vita phantom --seed 0" */
    int gzip;                  /* 0 = none, 1..9 */
} DatasetSpec;
typedef struct DatasetWriter DatasetWriter;
DatasetWriter* dataset_create(const char* path, const DatasetSpec* spec, char* err, size_t errlen);
/* case i: img [C,D,H,W], seg [D,H,W] or NULL, cls, split, fold, channel_present [C] (NULL =
 * all present), geometry (spacing/origin [3], direction [9], shape_original/crop_offset [3];
 * NULL = identity geometry of the common grid) */
int dataset_write_case(DatasetWriter* w, int i, const char* case_id, const float* img,
                       const uint8_t* seg, int32_t cls, int split, int fold,
                       const uint8_t* channel_present, const double* spacing,
                       const double* origin, const double* direction,
                       const int32_t* shape_original, const int32_t* crop_offset);
/* optional, after dataset_write_case(w, i, ...): the spacing (z,y,x) of the resampled grid of
 * case i (/geometry/grid_spacing, engine/volume.h); cases never given one get their spacing */
int dataset_set_grid_spacing(DatasetWriter* w, int i, const double grid_spacing[3]);
/* extra root attributes (e.g. normalisation statistics, the import report); names must not
 * clash with the SPEC.md §2 attributes. Errors are kept and returned by dataset_finish. */
int dataset_writer_attr_str(DatasetWriter* w, const char* name, const char* value);
int dataset_writer_attr_num(DatasetWriter* w, const char* name, int n, const double* values);
int dataset_finish(DatasetWriter* w, char* err, size_t errlen);   /* closes + renames */

#endif
