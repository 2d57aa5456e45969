/* engine/cmd_import.c — `vita import` command line (SPEC.md §1) -> ImportOptions ->
 * import_run (engine/import.c; layouts in engine/import_layouts.c). */
#include "commands.h"
#include "check.h"
#include "import.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static const char* IMPORT_USAGE =
    "usage: vita import --layout picai|prostate158|flat SRC --out DATA.h5 [options]\n"
    "  real prostate MRI (NIfTI .nii/.nii.gz, MetaImage .mha/.mhd) -> a vita dataset\n"
    "  (channels t2w,adc,hbv; ADC/hbv resampled onto the T2w grid with cubic B-splines,\n"
    "  labels with nearest neighbour; per-case geometry kept for `vita predict`)\n"
    "layouts:\n"
    "  picai        SRC/<patient>/<patient>_<study>_{t2w,adc,hbv}.mha\n"
    "    --labels DIR     lesion labels DIR/<patient>_<study>.nii.gz (expert ISUP grades or\n"
    "                     AI-derived binary csPCa; voxel > 0 = lesion)\n"
    "    --gland DIR      whole-gland masks DIR/<patient>_<study>.nii.gz (> 0 = gland)\n"
    "    --marksheet CSV  columns patient_id, study_id, case_ISUP and/or case_csPCa (YES/NO);\n"
    "                     csPCa = ISUP >= 2; cases not in it: csPCa = any lesion voxel\n"
    "    labels: background,gland,lesion (those available); classes: benign,csPCa\n"
    "  prostate158  SRC/<case>/{t2,adc,dwi}.nii.gz, t2_anatomy_reader1.nii.gz (1 TZ, 2 PZ),\n"
    "               *tumor_reader1.nii.gz (none = no tumour); labels background,tz,pz,lesion\n"
    "  flat         SRC (or --csv F): CSV with header case_id,t2w,adc,hbv,seg,cls,split,fold;\n"
    "               paths relative to the CSV; empty = missing (a missing channel is stored as\n"
    "               zeros with /channel_present 0); split train|val|test|probe or empty\n"
    "    --label-names a,b,..  (default background,foreground)  --class-names (negative,positive)\n"
    "options:\n"
    "  --folds F          CSV with columns fold and case_id (or patient_id, study_id), or a\n"
    "                     directory of fold<k>.txt / fold_<k>.txt listing case_ids per line\n"
    "  --val-fold K --test-fold K   cases of fold K go to val / test, the rest to train\n"
    "  --val-frac F --test-frac F   else a seeded random split (default val 0.2, test 0)\n"
    "  --seed S           seed of that split (default 0)\n"
    "  --spacing z,y,x    resample everything to this spacing in mm (default: T2w grid)\n"
    "  --size D,H,W       crop/pad to this grid, centred on the gland mask centroid (picai\n"
    "                     --gland, prostate158 anatomy) or the image centre (default: the\n"
    "                     first case's grid; then every case must share it)\n"
    "  --skip-bad         leave out cases with missing/inconsistent files (listed in the report)\n"
    "  --gzip N           HDF5 compression 0..9 (default 1)\n"
    "  --threads N  --device cpu|cuda|auto (import runs on the CPU)  --quiet\n"
    "normalisation: t2w and hbv z-scored per case; adc clipped to the dataset's 0.5/99.5\n"
    "percentiles and normalised with the clipped values' global mean/std (root attrs adc_clip,\n"
    "adc_mean_std, normalization); the import report is printed and stored (import_report).\n";

static int parse_list(const char* s, double* out, int n) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    char* p = buf;
    for (int k = 0; k < n; k++) {
        char* end;
        errno = 0;
        out[k] = strtod(p, &end);
        if (end == p || errno || !isfinite(out[k])) return 1;
        p = end;
        if (k < n - 1) {
            if (*p != ',' && *p != 'x') return 1;
            p++;
        }
    }
    return *p != 0;
}

static int parse_num(const char* s, double lo, double hi, double* out) {
    char* end;
    errno = 0;
    *out = strtod(s, &end);
    return end == s || *end || errno || !(*out >= lo && *out <= hi);
}

int cmd_import(int argc, char** argv) {
    ImportOptions o;
    memset(&o, 0, sizeof o);
    o.val_fold = o.test_fold = -1;
    o.val_frac = 0.2;
    o.gzip = 1;
    char command[4096];
    int cp = snprintf(command, sizeof command, "vita import");
    for (int a = 1; a < argc && cp < (int)sizeof command; a++)
        cp += snprintf(command + cp, sizeof command - cp, " %s", argv[a]);
    o.command = command;
    for (int a = 1; a < argc; a++) {
        const char* k = argv[a];
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            fputs(IMPORT_USAGE, stdout);
            return 0;
        }
        if (!strcmp(k, "--quiet")) { o.quiet = 1; continue; }
        if (!strcmp(k, "--skip-bad")) { o.skip_bad = 1; continue; }
        if (k[0] != '-') {
            if (o.src) {
                fprintf(stderr, "vita: import: a second source '%s' (after '%s'); give one SRC\n", k, o.src);
                return VITA_EXIT_USER;
            }
            o.src = k;
            continue;
        }
        const char* v = a + 1 < argc ? argv[a + 1] : NULL;
        if (!v) {
            fprintf(stderr, "vita: import: %s needs a value (vita import --help)\n", k);
            return VITA_EXIT_USER;
        }
        a++;
        double x, l[3];
        if (!strcmp(k, "--layout")) o.layout = v;
        else if (!strcmp(k, "--out")) o.out = v;
        else if (!strcmp(k, "--labels")) o.labels = v;
        else if (!strcmp(k, "--gland")) o.gland = v;
        else if (!strcmp(k, "--marksheet")) o.marksheet = v;
        else if (!strcmp(k, "--folds")) o.folds = v;
        else if (!strcmp(k, "--csv")) o.csv = v;
        else if (!strcmp(k, "--label-names")) o.label_names = v;
        else if (!strcmp(k, "--class-names")) o.class_names = v;
        else if (!strcmp(k, "--spacing")) {
            if (parse_list(v, l, 3) || !(l[0] > 0 && l[1] > 0 && l[2] > 0)) {
                fprintf(stderr, "vita: import: --spacing '%s' must be z,y,x in mm (three positive numbers)\n", v);
                return VITA_EXIT_USER;
            }
            memcpy(o.spacing, l, sizeof l);
        } else if (!strcmp(k, "--size")) {
            if (parse_list(v, l, 3) || l[0] < 1 || l[1] < 1 || l[2] < 1 || l[0] > 4096 || l[1] > 4096 ||
                l[2] > 4096 || l[0] != floor(l[0]) || l[1] != floor(l[1]) || l[2] != floor(l[2])) {
                fprintf(stderr, "vita: import: --size '%s' must be D,H,W (three integers 1..4096)\n", v);
                return VITA_EXIT_USER;
            }
            for (int d = 0; d < 3; d++) o.size[d] = (int)l[d];
        } else if (!strcmp(k, "--val-fold") || !strcmp(k, "--test-fold")) {
            if (parse_num(v, 0, 127, &x) || x != floor(x)) {
                fprintf(stderr, "vita: import: %s '%s' must be a fold number 0..127\n", k, v);
                return VITA_EXIT_USER;
            }
            *(k[2] == 'v' ? &o.val_fold : &o.test_fold) = (int)x;
        } else if (!strcmp(k, "--val-frac") || !strcmp(k, "--test-frac")) {
            if (parse_num(v, 0, 1, &x)) {
                fprintf(stderr, "vita: import: %s '%s' must be a fraction 0..1\n", k, v);
                return VITA_EXIT_USER;
            }
            *(k[2] == 'v' ? &o.val_frac : &o.test_frac) = x;
        } else if (!strcmp(k, "--seed")) {
            if (parse_num(v, 0, 9007199254740992.0, &x) || x != floor(x)) {
                fprintf(stderr, "vita: import: --seed '%s' must be a non-negative integer\n", v);
                return VITA_EXIT_USER;
            }
            o.seed = (uint64_t)x;
        } else if (!strcmp(k, "--gzip")) {
            if (parse_num(v, 0, 9, &x) || x != floor(x)) {
                fprintf(stderr, "vita: import: --gzip '%s' must be 0..9\n", v);
                return VITA_EXIT_USER;
            }
            o.gzip = (int)x;
        } else if (!strcmp(k, "--threads")) {
            if (parse_num(v, 1, 4096, &x) || x != floor(x)) {
                fprintf(stderr, "vita: import: --threads '%s' must be a positive integer\n", v);
                return VITA_EXIT_USER;
            }
#ifdef _OPENMP
            omp_set_num_threads((int)x);
#endif
        } else if (!strcmp(k, "--device")) {
            if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto")) {
                fprintf(stderr, "vita: import: --device '%s'; use cpu, cuda or auto\n", v);
                return VITA_EXIT_USER;
            }
        } else {
            fprintf(stderr, "vita: import: unknown option %s (vita import --help)\n", k);
            return VITA_EXIT_USER;
        }
    }
    if (!o.layout || !o.out || (!o.src && !o.csv)) {
        fprintf(stderr, "vita: import: needs --layout picai|prostate158|flat, SRC and --out DATA.h5 "
                "(vita import --help)\n");
        return VITA_EXIT_USER;
    }
    if (!o.src) o.src = o.csv;
    if (o.val_frac + o.test_frac > 1) {
        fprintf(stderr, "vita: import: --val-frac + --test-frac = %g exceeds 1\n", o.val_frac + o.test_frac);
        return VITA_EXIT_USER;
    }
    if ((o.labels || o.gland || o.marksheet) && strcmp(o.layout, "picai")) {
        fprintf(stderr, "vita: import: --labels / --gland / --marksheet belong to --layout picai\n");
        return VITA_EXIT_USER;
    }
    return import_run(&o);
}
