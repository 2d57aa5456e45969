/* engine/cmd_sweep.c — `vita sweep SWEEP.yaml --out DIR [--force] [--quiet] [--help]`: expands a
 * sweep file (format: engine/sweep.h) into DIR:
 *   DIR/sweep.yaml            the sweep resolved (absolute base and weights paths) + n_runs
 *   DIR/index.tsv             id, run_dir, weights, task, lr, seed, fold, one column per extra
 *                             axis; one line per run; labels (weights, extra values) and values
 *                             as written in the sweep file; run_dir relative to DIR
 *   DIR/runs/NNNN/config.yaml the fully resolved config of run NNNN (config_to_yaml; data.path,
 *                             model.weights and run.out absolute); DIR/runs/NNNN is its RUN_DIR
 * Everything is computed and checked (every run config goes through config_load) before the
 * first write; every file is written atomically, sweep.yaml last (its presence = a complete
 * sweep). Re-issuing the same sweep into the same DIR is a no-op; a different one is refused
 * unless --force, which rewrites the files and deletes the run directories whose config
 * changed or that the new grid no longer has (unchanged runs keep their results). A started
 * run whose model.weights file no longer has the sha256 its log.h5 recorded (the encoder was
 * pretrained again) counts as changed too: its results belong to other weights. Relative
 * paths inside the base config (data.path, model.weights) keep `vita train`'s meaning:
 * relative to the current directory. */
#define _GNU_SOURCE   /* nftw, FTW_DEPTH */
#include "commands.h"
#include "check.h"
#include "sha256.h"
#include "checkpoint.h"
#include "config.h"
#include "rundir.h"
#include "runutil.h"
#include "sweep.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char* SWEEP_USAGE =
    "usage: vita sweep SWEEP.yaml --out DIR [--force] [--quiet]\n"
    "\n"
    "Expands a sweep file (a base config x axes: weights, task, lr, seed, fold, extra) into one\n"
    "resolved config per run: DIR/runs/NNNN/config.yaml (NNNN = run id, the last axis counting\n"
    "fastest), DIR/index.tsv and DIR/sweep.yaml. Format: configs/examples/sweep-demo.yaml.\n"
    "Run the sweep with\n"
    "  scripts/run-sweep-local.sh DIR -j 2                       (one machine)\n"
    "  sbatch --array=0-<n-1>%20 scripts/slurm/sweep.sbatch DIR  (SLURM job array)\n"
    "or one run with: vita train DIR/runs/0000/config.yaml --resume\n"
    "\n"
    "options:\n"
    "  --out DIR   the sweep directory (created)\n"
    "  --force     replace a different sweep in DIR: run directories whose config changed, whose\n"
    "              weights file changed since they started (sha256 in their log.h5), or that\n"
    "              the new grid lacks are DELETED; unchanged runs are kept\n"
    "  --quiet     print errors only\n"
    "  --help\n"
    "Re-issuing the same sweep into the same DIR changes nothing. exit codes: 0 ok, 1 user error\n";

/* a relative config path made absolute in place (CFG_STR bytes) */
static int absolutize(char* p, const char* key, char* err, size_t errlen) {
    if (!p[0] || p[0] == '/') return 0;
    char a[SWEEP_PATH];
    if (sweep_abs_path(NULL, p, a, sizeof a) || strlen(a) >= CFG_STR) {
        snprintf(err, errlen, "%s = %s: the absolute path is longer than %d characters; move the file", key, p,
                 CFG_STR - 1);
        return 1;
    }
    snprintf(p, CFG_STR, "%s", a);
    return 0;
}

static int has_layer(const Config* cfg, const char* name) {
    for (int i = 0; i < cfg->n_align_layers; i++) {
        char l[16];
        if (cfg->align_layers[i] == 0) snprintf(l, sizeof l, "norm");
        else snprintf(l, sizeof l, "%d", cfg->align_layers[i]);
        if (!strcmp(l, name)) return 1;
    }
    return 0;
}

/* the primary analysis must be in every run's log */
static int check_primary(const Sweep* s, const Config* cfg, char* err, size_t errlen) {
    if (!has_layer(cfg, s->primary_layer)) {
        snprintf(err, errlen, "primary.layer = %s is not among align.layers of the run config; add it to "
                 "align.layers of the base config or pick a probed layer", s->primary_layer);
        return 1;
    }
    if (strcmp(cfg->align_feature, s->primary_feature)) {
        snprintf(err, errlen, "primary.feature = %s but the run config logs align.feature = %s; make them equal",
                 s->primary_feature, cfg->align_feature);
        return 1;
    }
    int e = mmd_estimator_from_name(s->primary_estimator), found = 0;
    for (int i = 0; e >= 0 && i < cfg->n_estimators; i++) found |= cfg->estimators[i] == e;
    if (!found) {
        snprintf(err, errlen, "primary.estimator = %s is not logged by the run config (align.estimators); add "
                 "it there or pick a logged one", s->primary_estimator);
        return 1;
    }
    return 0;
}

/* an index.tsv cell of an axis the sweep file leaves out: the run config's value */
static void absent_cell(int axis, const Config* cfg, char* out, size_t n) {
    switch (axis) {
    case SWEEP_AX_WEIGHTS: {
        const char* w = cfg->model_weights;
        const char* b = strrchr(w, '/');
        b = b ? b + 1 : w;
        if (!w[0]) snprintf(out, n, "scratch");
        else snprintf(out, n, "%.*s", (int)strcspn(b, "."), b);
        break;
    }
    case SWEEP_AX_TASK: snprintf(out, n, "%s", head_task_name(cfg->task)); break;
    case SWEEP_AX_LR: snprintf(out, n, "%.6g", cfg->lr); break;
    case SWEEP_AX_SEED: snprintf(out, n, "%llu", (unsigned long long)cfg->seed); break;
    default: snprintf(out, n, "%d", cfg->fold); break;
    }
}

typedef struct { char* p; size_t n, cap; } Txt;
static void tput(Txt* t, const char* s) {
    size_t k = strlen(s);
    if (t->n + k + 1 > t->cap) {
        t->cap = (t->n + k + 1) * 2;
        t->p = realloc(t->p, t->cap);
        CHECK(t->p, "out of memory");
    }
    memcpy(t->p + t->n, s, k + 1);
    t->n += k;
}

/* 1 if path holds exactly text */
static int same_text(const char* path, const char* text) {
    char* old = run_read_text(path);
    int same = old && !strcmp(old, text);
    free(old);
    return same;
}

static int rm_entry(const char* p, const struct stat* st, int flag, struct FTW* f) {
    (void)st; (void)flag; (void)f;
    return remove(p) ? -1 : 0;
}
static int rm_tree(const char* dir, char* err, size_t errlen) {
    if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) && errno != ENOENT) {
        snprintf(err, errlen, "%.900s: cannot delete: %s", dir, strerror(errno));
        return 1;
    }
    return 0;
}

/* with --force: run directories under runs/ that the new grid does not have */
static int remove_stale(const char* runs_dir, long n_runs, int width, int* removed, char* err, size_t errlen) {
    DIR* d = opendir(runs_dir);
    if (!d) return 0;
    struct dirent* e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        const char* nm = e->d_name;
        if (nm[0] == '.' || strspn(nm, "0123456789") != strlen(nm)) continue;
        if ((int)strlen(nm) == width && atol(nm) < n_runs) continue;
        char p[2 * SWEEP_PATH];
        snprintf(p, sizeof p, "%s/%s", runs_dir, nm);
        rc = rm_tree(p, err, errlen);
        (*removed)++;
    }
    closedir(d);
    return rc;
}

static int is_empty_dir(const char* p) { return run_is_dir(p) && !run_dir_nonempty(p); }

/* started runs whose weights file's sha256 differs from the weights_sha256 their log.h5
 * recorded: stale[r] = 1, *first = the first of them (when *first < 0); returns how many.
 * A log that cannot be read (a run writing it, a killed run) or that recorded no sha is not
 * judged; each distinct weights file is hashed once. */
static long weights_changed(const char* runs_dir, int width, long n_runs, char* const* wts,
                            char* stale, long* first) {
    enum { CACHE = 16 };
    const char* cp[CACHE];
    char ch[CACHE][65];
    int nc = 0;
    long n = 0;
    for (long r = 0; r < n_runs; r++) {
        if (!wts[r]) continue;
        char rd[SWEEP_PATH + 64], lp[SWEEP_PATH + 80], rec[65], e[512];
        snprintf(rd, sizeof rd, "%s/%0*ld", runs_dir, width, r);
        if (!rundir_started(rd)) continue;
        snprintf(lp, sizeof lp, "%s/log.h5", rd);
        if (run_logged_weights_sha(lp, rec)) continue;
        const char* now = NULL;
        for (int k = 0; k < nc && !now; k++)
            if (!strcmp(cp[k], wts[r])) now = ch[k];
        char hex[65];
        if (!now) {
            if (sha256_file(wts[r], hex, e, sizeof e)) continue;   /* a missing file: config_load said so */
            if (nc < CACHE) {
                cp[nc] = wts[r];
                memcpy(ch[nc++], hex, sizeof hex);
            }
            now = hex;
        }
        if (strcmp(now, rec)) {
            stale[r] = 1;
            if (*first < 0) *first = r;
            n++;
        }
    }
    return n;
}

int cmd_sweep(int argc, char** argv) {
    const char *path = NULL, *out = NULL;
    int force = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(SWEEP_USAGE, stdout);
            return 0;
        } else if (!strcmp(a, "--out")) {
            if (i + 1 >= argc) return run_err("sweep: --out needs a directory (vita sweep --help)");
            out = argv[++i];
        } else if (!strncmp(a, "--out=", 6)) {
            out = a + 6;
        } else if (!strcmp(a, "--force")) {
            force = 1;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            return run_err("sweep: unknown option '%s' (vita sweep --help)", a);
        } else if (!path) {
            path = a;
        } else {
            return run_err("sweep: one sweep file expected, got '%s' and '%s'", path, a);
        }
    }
    if (!path || !out || !*out) {
        fputs(SWEEP_USAGE, stderr);
        return VITA_EXIT_USER;
    }
    char err[2048], dir[SWEEP_PATH], runs_dir[SWEEP_PATH + 8];
    if (sweep_abs_path(NULL, out, dir, sizeof dir - 32)) return run_err("sweep: --out %s: path too long", out);
    snprintf(runs_dir, sizeof runs_dir, "%s/runs", dir);

    Sweep s;
    if (sweep_load(&s, path, err, sizeof err)) {
        sweep_free(&s);
        return run_err("%s", err);
    }
    int rc = VITA_EXIT_USER;
    long n_runs = sweep_n_runs(&s);
    int width = sweep_id_width(n_runs);
    char** yaml = NULL;
    char** wts = NULL;   /* each run's model.weights (absolute), NULL: scratch */
    char* stale = NULL;  /* started runs whose weights file changed since */
    Txt index = {0};
    char* sweep_yaml = NULL;
    Config* cfg = xcalloc(1, sizeof *cfg);
    char base_task[32];
    if (config_load(cfg, s.base, NULL, 0, err, sizeof err)) {
        run_err("%s: base config: %s", path, err);
        goto done;
    }
    snprintf(base_task, sizeof base_task, "%s", head_task_name(cfg->task));
    if (!s.axes[SWEEP_AX_TASK].present)
        for (int i = 0; i < s.n_task_set; i++)
            if (strcmp(s.ts_task[i], base_task)) {
                run_err("%s: task_set.%s: the sweep has no task axis and the base config's task is %s; remove "
                        "the entry", path, s.ts_task[i], base_task);
                goto done;
            }
    if (n_runs < 1 || n_runs > 10000000) {
        run_err("%s: the axes give %s runs; split the sweep", path, n_runs < 1 ? "too many" : "over 10^7");
        goto done;
    }

    /* every run config, checked, in memory */
    yaml = xcalloc((size_t)n_runs, sizeof(char*));
    wts = xcalloc((size_t)n_runs, sizeof(char*));
    tput(&index, "id\trun_dir\tweights\ttask\tlr\tseed\tfold");
    for (int a = SWEEP_N_BUILTIN; a < s.n_axes; a++) {
        tput(&index, "\t");
        tput(&index, s.axes[a].name);
    }
    tput(&index, "\n");
    int* idx = xcalloc((size_t)s.n_axes, sizeof(int));
    for (long r = 0; r < n_runs; r++) {
        char id[32], line[4096], cell[512];
        snprintf(id, sizeof id, "%0*ld", width, r);
        int ns = 0;
        char** sets = sweep_run_sets(&s, r, base_task, runs_dir, id, &ns);
        sweep_run_index(&s, r, idx);
        int bad = config_load(cfg, s.base, (const char* const*)sets, ns, err, sizeof err);
        sweep_sets_free(sets, ns);
        if (!bad)
            bad = absolutize(cfg->data_path, "data.path", err, sizeof err) ||
                  absolutize(cfg->model_weights, "model.weights", err, sizeof err) ||
                  check_primary(&s, cfg, err, sizeof err);
        /* the run's coordinates, for the error line and index.tsv */
        snprintf(line, sizeof line, "%s\truns/%s", id, id);
        for (int a = 0; a < s.n_axes; a++) {
            if (s.axes[a].present) snprintf(cell, sizeof cell, "%s", s.axes[a].labels[idx[a]]);
            else absent_cell(a, cfg, cell, sizeof cell);
            snprintf(line + strlen(line), sizeof line - strlen(line), "\t%s", cell);
        }
        if (bad) {
            char coord[1024] = "";
            for (int a = 0; a < s.n_axes; a++)
                if (s.axes[a].present)
                    snprintf(coord + strlen(coord), sizeof coord - strlen(coord), "%s%s=%s", coord[0] ? ", " : "",
                             s.axes[a].name, s.axes[a].labels[idx[a]]);
            run_err("%s: run %s (%s): %s", path, id, coord[0] ? coord : "the base config", err);
            free(idx);
            goto done;
        }
        tput(&index, line);
        tput(&index, "\n");
        yaml[r] = config_to_yaml(cfg);
        wts[r] = cfg->model_weights[0] ? run_sdup(cfg->model_weights) : NULL;
    }
    free(idx);
    sweep_yaml = sweep_to_yaml(&s, n_runs);

    /* what DIR holds already */
    char p[2 * SWEEP_PATH], sweep_path[SWEEP_PATH + 16], index_path[SWEEP_PATH + 16];
    snprintf(sweep_path, sizeof sweep_path, "%s/sweep.yaml", dir);
    snprintf(index_path, sizeof index_path, "%s/index.tsv", dir);
    const char* differs = NULL;
    long first_diff = -1;
    if (run_is_dir(dir) && !is_empty_dir(dir)) {
        if (access(sweep_path, F_OK)) differs = "it holds no sweep.yaml (another directory, or an interrupted vita sweep)";
        else if (!same_text(sweep_path, sweep_yaml)) differs = "its sweep.yaml differs from this sweep";
        else if (!same_text(index_path, index.p)) differs = "its index.tsv differs from this sweep";
        for (long r = 0; !differs && r < n_runs; r++) {
            snprintf(p, sizeof p, "%s/%0*ld/config.yaml", runs_dir, width, r);
            if (!same_text(p, yaml[r])) {
                differs = "a run config differs (the base config changed?)";
                first_diff = r;
            }
        }
        stale = xcalloc((size_t)n_runs, 1);
        long n_stale = weights_changed(runs_dir, width, n_runs, wts, stale, &first_diff);
        if (!differs && n_stale > 0) differs = "a weights file changed since its runs started (pretrained again?)";
        if (!differs) {
            if (!quiet) printf("sweep %s: %s already holds this sweep (%ld runs); nothing written\n", s.name, dir, n_runs);
            rc = 0;
            goto done;
        }
        if (!force) {
            char fd[SWEEP_PATH + 128] = "";
            if (first_diff >= 0 && stale && stale[first_diff])
                snprintf(fd, sizeof fd, ": runs/%0*ld started from another %s (its log.h5 recorded another sha256)",
                         width, first_diff, wts[first_diff]);
            else if (first_diff >= 0)
                snprintf(fd, sizeof fd, ": runs/%0*ld/config.yaml", width, first_diff);
            run_err("sweep: %s exists and %s%s; use --force to replace it (deletes runs whose config or weights changed) "
                    "or choose another --out", dir, differs, fd);
            goto done;
        }
    }

    /* write: run configs, then index.tsv, then sweep.yaml (its presence = a complete sweep) */
    if (run_mkdir_p(runs_dir)) {
        run_err("sweep: cannot create %s: %s", runs_dir, strerror(errno));
        goto done;
    }
    int removed = 0, kept = 0;
    if (force && remove_stale(runs_dir, n_runs, width, &removed, err, sizeof err)) {
        run_err("sweep: %s", err);
        goto done;
    }
    for (long r = 0; r < n_runs; r++) {
        char rd[SWEEP_PATH + 64];
        snprintf(rd, sizeof rd, "%s/%0*ld", runs_dir, width, r);
        snprintf(p, sizeof p, "%s/config.yaml", rd);
        if (same_text(p, yaml[r]) && !(stale && stale[r])) {
            kept += rundir_started(rd);
            continue;
        }
        if (rundir_started(rd)) {   /* only with --force: results of another config */
            if (rm_tree(rd, err, sizeof err)) {
                run_err("sweep: %s", err);
                goto done;
            }
            removed++;
        }
        if (run_mkdir_p(rd)) {
            run_err("sweep: cannot create %s: %s", rd, strerror(errno));
            goto done;
        }
        if (write_file_atomic(p, yaml[r], strlen(yaml[r]), err, sizeof err)) {
            run_err("sweep: %s", err);
            goto done;
        }
    }
    if (write_file_atomic(index_path, index.p, index.n, err, sizeof err) ||
        write_file_atomic(sweep_path, sweep_yaml, strlen(sweep_yaml), err, sizeof err)) {
        run_err("sweep: %s", err);
        goto done;
    }
    if (!quiet) {
        printf("sweep %s: %ld runs in %s (runs/%0*d .. runs/%0*ld, index.tsv, sweep.yaml)", s.name, n_runs, dir,
               width, 0, width, n_runs - 1);
        if (removed || kept) printf("; %d old run directories deleted, %d started runs kept", removed, kept);
        printf("\nrun it: scripts/run-sweep-local.sh %s -j 2   or   sbatch --array=0-%ld%%20 "
               "scripts/slurm/sweep.sbatch %s\n", dir, n_runs - 1, dir);
    }
    rc = 0;
done:
    if (yaml)
        for (long r = 0; r < n_runs; r++) free(yaml[r]);
    free(yaml);
    if (wts)
        for (long r = 0; r < n_runs; r++) free(wts[r]);
    free(wts);
    free(stale);
    free(index.p);
    free(sweep_yaml);
    free(cfg);
    sweep_free(&s);
    return rc;
}
