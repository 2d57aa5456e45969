/* engine/import.h — `vita import`: real MRI cases (NIfTI / MetaImage) -> a vita dataset
 * (SPEC.md §2) with per-case geometry (engine/volume.h). Layouts (import_layouts.c) list the
 * cases and their files; import.c resamples, crops, normalises and writes them. */
#ifndef VITA_IMPORT_H
#define VITA_IMPORT_H

#include <stddef.h>
#include <stdint.h>
#include "errfmt.h"   /* vita_fail: the one-line error into (err, errlen) */

#define IMP_PATH 1024
#define IMP_CH 3          /* channels t2w, adc, hbv (in this order) */

typedef struct {
    const char *layout, *src, *out;
    const char *labels, *gland, *marksheet, *folds, *csv;   /* NULL = not given */
    const char *label_names, *class_names;                  /* flat layout */
    double spacing[3];        /* --spacing z,y,x (mm); 0 = keep each case's T2w grid */
    int size[3];              /* --size D,H,W; 0 = the (common) resampled grid shape */
    int val_fold, test_fold;  /* -1 = not used */
    double val_frac, test_frac;
    uint64_t seed;
    int skip_bad, gzip, quiet;
    const char* command;      /* the command line, stored as the dataset's source attribute */
} ImportOptions;

/* seg sources of one case, combined into the dataset's labels (see import_layouts.c) */
enum { SEG_NONE = 0, SEG_PICAI = 1, SEG_P158 = 2, SEG_FLAT = 3 };

typedef struct {
    char case_id[64];
    char img[IMP_CH][IMP_PATH];   /* "" = channel missing */
    char lesion[IMP_PATH];        /* picai: lesion label; prostate158: tumour label */
    char gland[IMP_PATH];         /* picai: whole-gland mask; prostate158: anatomy (1 TZ, 2 PZ) */
    char seg[IMP_PATH];           /* flat: the label image as is */
    int seg_kind;
    int cls;                      /* -1 unknown (picai: marksheet; flat: column) */
    int fold;                     /* -1 none */
    int split;                    /* -1 = assign (folds / fractions) */
    char bad[512];                /* set by the layout: why the case cannot be imported */
} ImportCase;

typedef struct {
    ImportCase* cases;
    int n;
    const char* label_names;      /* NULL = no /seg */
    const char* class_names;      /* NULL = no /cls */
} ImportList;

/* lists the cases of opts->layout under opts->src; 0, or 1 with one line in err */
int import_list_cases(const ImportOptions* opts, ImportList* list, char* err, size_t errlen);
void import_list_free(ImportList* list);
/* the whole import; returns a process exit code (0, 1 user error) */
int import_run(const ImportOptions* opts);

#endif
