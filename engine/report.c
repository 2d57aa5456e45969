/* engine/report.c — the analysis of `vita report`: arms, setting selection, RPG, convergence,
 * per-layer alignment, correlations and controls, printed as markdown and written as CSV.
 * Definitions: report.h. Run-level values live in arrays indexed like in->runs; an arm holds
 * the indices of its runs. Numbers printed to stdout are rounded for reading; the CSVs carry
 * every number with 9 significant digits (what tools/plot.py and the tests read). */
#include "report.h"
#include "report_stats.h"
#include "check.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RP_MAX_SETTINGS 64

typedef struct {
    char key[512];             /* "lr=3.0e-04 drop=0.1": how the setting is printed */
    double lr;
    int n;                     /* runs */
    double best_val_mean;      /* mean over replicates of the best validation metric */
    int first_run;             /* a run of this setting (its extras) */
} Setting;

typedef struct {
    char weights[RP_NAME], task[RP_NAME], metric[RP_NAME];
    int higher, is_scratch, in_main, task_idx;
    int n_set, sel;
    Setting set[RP_MAX_SETTINGS];
    int* runs; int n_runs;     /* every usable run of the arm */
    int* rs; int n_rs;         /* runs of the selected setting */
    /* summaries over rs */
    double test_m, test_sd, rpg_m, rpg_sd, steps_m, steps_sd, secs_m, secs_sd, e95_m, e95_sd;
    double prim_m, prim_sd;
    int n_rpg, n_reached, censored, n_unmatched;
    double censor_at;          /* the largest step count of a censored run */
} Arm;

typedef struct {
    const RpInput* in;
    const RpOptions* opt;
    int n_arms;
    Arm* arms;
    int n_tasks;
    char tasks[64][RP_NAME];
    double* rpg;               /* [n_runs] */
    double* steps;             /* [n_runs] steps to the scratch level, NaN unknown */
    double* secs;
    int* censored;
    int* sel;                  /* 1 if the run belongs to its arm's selected setting */
    int* unit;                 /* replicate index of (seed, fold) */
    int* arm_of;
    int n_layers;
    char layers[RP_MAX_LAYERS * 4][RP_NAME];
    int n_est;
    char est[RP_MAX_EST * 2][RP_NAME];
} Ctx;

/* value of estimator est at layer of run r; NaN when the run did not log it */
static double run_stat(const RpRun* r, const char* est, const char* layer) {
    for (int k = 0; k < r->n_est; k++) {
        if (strcmp(r->est[k], est)) continue;
        for (int l = 0; l < r->n_layers; l++)
            if (!strcmp(r->layers[l], layer)) return r->last[(size_t)k * r->n_layers + l];
    }
    return NAN;
}
static double run_floor(const RpRun* r, const char* layer) {
    for (int l = 0; l < r->n_layers; l++)
        if (!strcmp(r->layers[l], layer)) return r->floor[l];
    return NAN;
}
/* mmd2 relative to the noise floor: the ratio when the floor is > 0, else the difference;
 * *ratio says which */
static double rel_floor(double v, double floor, int* ratio) {
    *ratio = floor > 0;
    if (v != v || floor != floor) return NAN;
    return floor > 0 ? v / floor : v - floor;
}

static int in_list(const char* s, const char (*list)[RP_NAME], int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i], s)) return 1;
    return 0;
}

static void setting_key(const RpInput* in, const RpRun* r, char* buf, size_t len) {
    size_t k = (size_t)snprintf(buf, len, "lr=%.3g", r->lr);
    for (int j = 0; j < r->n_extra && k < len; j++)
        k += (size_t)snprintf(buf + k, len - k, " %s=%s", in->extra_names[j], r->extra[j]);
}

static double best_of(const RpRun* r) {
    double b = NAN;
    for (int e = 0; e < r->n_ep; e++) {
        double v = r->val[e];
        if (v == v && (b != b || (r->higher ? v > b : v < b))) b = v;
    }
    return b;
}

/* mean/sd over the arm's selected runs of f(run index) */
static void arm_stat(const Ctx* c, const Arm* a, const double* v, double* m, double* sd, int* n) {
    double* x = xmalloc((size_t)(a->n_rs + 1) * sizeof(double));
    for (int i = 0; i < a->n_rs; i++) x[i] = v[a->rs[i]];
    int k = rs_mean_sd(x, a->n_rs, m, sd);
    if (n) *n = k;
    free(x);
    (void)c;
}

static Arm* find_arm(Ctx* c, const char* w, const char* task) {
    for (int i = 0; i < c->n_arms; i++)
        if (!strcmp(c->arms[i].weights, w) && !strcmp(c->arms[i].task, task)) return &c->arms[i];
    return NULL;
}

static int task_index(Ctx* c, const char* task) {
    for (int i = 0; i < c->n_tasks; i++)
        if (!strcmp(c->tasks[i], task)) return i;
    CHECK(c->n_tasks < 64, "more than 64 tasks");
    snprintf(c->tasks[c->n_tasks], RP_NAME, "%s", task);
    return c->n_tasks++;
}

/* ---- building arms ------------------------------------------------------------------------ */
static void build(Ctx* c) {
    const RpInput* in = c->in;
    int n = in->n_runs;
    c->arms = xcalloc((size_t)(n + 1), sizeof(Arm));
    c->rpg = xmalloc((size_t)(n + 1) * sizeof(double));
    c->steps = xmalloc((size_t)(n + 1) * sizeof(double));
    c->secs = xmalloc((size_t)(n + 1) * sizeof(double));
    c->censored = xcalloc((size_t)(n + 1), sizeof(int));
    c->sel = xcalloc((size_t)(n + 1), sizeof(int));
    c->unit = xcalloc((size_t)(n + 1), sizeof(int));
    c->arm_of = xmalloc((size_t)(n + 1) * sizeof(int));
    long* useed = xmalloc((size_t)(n + 1) * sizeof(long));
    long* ufold = xmalloc((size_t)(n + 1) * sizeof(long));
    int nu = 0;
    for (int i = 0; i < n; i++) {
        const RpRun* r = &in->runs[i];
        c->rpg[i] = c->steps[i] = c->secs[i] = NAN;
        c->arm_of[i] = -1;
        if (r->status) continue;
        int u = 0;
        while (u < nu && !(useed[u] == r->seed && ufold[u] == r->fold)) u++;
        if (u == nu) { useed[nu] = r->seed; ufold[nu] = r->fold; nu++; }
        c->unit[i] = u;
        Arm* a = find_arm(c, r->weights, r->task);
        if (!a) {
            a = &c->arms[c->n_arms++];
            snprintf(a->weights, RP_NAME, "%s", r->weights);
            snprintf(a->task, RP_NAME, "%s", r->task);
            snprintf(a->metric, RP_NAME, "%s", r->metric);
            a->higher = r->higher;
            a->is_scratch = !strcmp(r->weights, in->scratch[0] ? in->scratch : "scratch");
            a->task_idx = task_index(c, r->task);
            a->runs = xmalloc((size_t)(n + 1) * sizeof(int));
            a->rs = xmalloc((size_t)(n + 1) * sizeof(int));
            a->sel = -1;
        }
        c->arm_of[i] = (int)(a - c->arms);
        a->runs[a->n_runs++] = i;
        /* layers and estimators seen anywhere, in order of appearance */
        for (int l = 0; l < r->n_layers; l++)
            if (!in_list(r->layers[l], (const char (*)[RP_NAME])c->layers, c->n_layers) &&
                c->n_layers < RP_MAX_LAYERS * 4)
                snprintf(c->layers[c->n_layers++], RP_NAME, "%s", r->layers[l]);
        for (int k = 0; k < r->n_est; k++)
            if (!in_list(r->est[k], (const char (*)[RP_NAME])c->est, c->n_est) && c->n_est < RP_MAX_EST * 2)
                snprintf(c->est[c->n_est++], RP_NAME, "%s", r->est[k]);
    }
    free(useed);
    free(ufold);

    /* settings and selection */
    for (int ai = 0; ai < c->n_arms; ai++) {
        Arm* a = &c->arms[ai];
        for (int j = 0; j < a->n_runs; j++) {
            const RpRun* r = &in->runs[a->runs[j]];
            char key[512];
            setting_key(in, r, key, sizeof key);
            int s = 0;
            while (s < a->n_set && strcmp(a->set[s].key, key)) s++;
            if (s == a->n_set) {
                CHECK(a->n_set < RP_MAX_SETTINGS, "more than %d settings in one arm", RP_MAX_SETTINGS);
                /* sorted by lr, then key, so that ties select the smaller lr */
                while (s > 0 && (a->set[s - 1].lr > r->lr ||
                                 (a->set[s - 1].lr == r->lr && strcmp(a->set[s - 1].key, key) > 0))) {
                    a->set[s] = a->set[s - 1];
                    s--;
                }
                memset(&a->set[s], 0, sizeof a->set[s]);
                snprintf(a->set[s].key, sizeof a->set[s].key, "%s", key);
                a->set[s].lr = r->lr;
                a->set[s].first_run = a->runs[j];
                a->n_set++;
            }
        }
        for (int s = 0; s < a->n_set; s++) {
            double sum = 0;
            int k = 0;
            for (int j = 0; j < a->n_runs; j++) {
                const RpRun* r = &in->runs[a->runs[j]];
                char key[512];
                setting_key(in, r, key, sizeof key);
                if (strcmp(key, a->set[s].key)) continue;
                double b = best_of(r);
                a->set[s].n++;
                if (b == b) { sum += b; k++; }
            }
            a->set[s].best_val_mean = k ? sum / k : NAN;
            double v = a->set[s].best_val_mean;
            if (v == v && (a->sel < 0 || (a->higher ? v > a->set[a->sel].best_val_mean
                                                    : v < a->set[a->sel].best_val_mean)))
                a->sel = s;
        }
        if (a->sel < 0) a->sel = 0;
        for (int j = 0; j < a->n_runs; j++) {
            const RpRun* r = &in->runs[a->runs[j]];
            char key[512];
            setting_key(in, r, key, sizeof key);
            if (!strcmp(key, a->set[a->sel].key)) {
                a->rs[a->n_rs++] = a->runs[j];
                c->sel[a->runs[j]] = 1;
            }
        }
    }

    /* RPG and convergence against the scratch arm of the same task */
    for (int ai = 0; ai < c->n_arms; ai++) {
        Arm* a = &c->arms[ai];
        Arm* s = NULL;
        for (int k = 0; k < c->n_arms; k++)
            if (c->arms[k].is_scratch && !strcmp(c->arms[k].task, a->task)) s = &c->arms[k];
        if (!s) continue;
        double sm = 0;
        int sk = 0;
        for (int j = 0; j < s->n_rs; j++) {
            double t = in->runs[s->rs[j]].test;
            if (t == t) { sm += t; sk++; }
        }
        if (!sk) continue;
        sm /= sk;
        double sign = a->higher ? 1.0 : -1.0;
        for (int j = 0; j < a->n_runs; j++) {
            int i = a->runs[j];
            const RpRun* r = &in->runs[i];
            /* the scratch runs of the same (seed, fold): their mean (several only when run
             * directories repeat a seed) */
            double ref = 0;
            int nref = 0;
            for (int q = 0; q < s->n_rs; q++)
                if (c->unit[s->rs[q]] == c->unit[i] && in->runs[s->rs[q]].test == in->runs[s->rs[q]].test) {
                    ref += in->runs[s->rs[q]].test;
                    nref++;
                }
            ref = nref ? ref / nref : NAN;
            if (ref != ref) {
                ref = sm;
                if (c->sel[i]) a->n_unmatched++;
            }
            if (ref != 0) c->rpg[i] = sign * (r->test - ref) / fabs(ref) * 100.0;
            /* convergence: the first epoch whose validation metric reaches the scratch level */
            int hit = -1;
            for (int e = 0; e < r->n_ep && hit < 0; e++)
                if (r->val[e] == r->val[e] && (a->higher ? r->val[e] >= sm : r->val[e] <= sm)) hit = e;
            if (hit >= 0) {
                c->steps[i] = r->steps[hit];
                c->secs[i] = r->secs[hit];
            } else {
                c->censored[i] = 1;
                c->steps[i] = r->steps[r->n_ep - 1];
                c->secs[i] = r->secs[r->n_ep - 1];
            }
        }
    }

    /* arm summaries over the selected setting */
    for (int ai = 0; ai < c->n_arms; ai++) {
        Arm* a = &c->arms[ai];
        double* t = xmalloc((size_t)(a->n_rs + 1) * sizeof(double));
        double* e = xmalloc((size_t)(a->n_rs + 1) * sizeof(double));
        double* p = xmalloc((size_t)(a->n_rs + 1) * sizeof(double));
        for (int j = 0; j < a->n_rs; j++) {
            const RpRun* r = &in->runs[a->rs[j]];
            t[j] = r->test;
            e[j] = r->e95;
            p[j] = run_stat(r, in->primary_est, in->primary_layer);
        }
        rs_mean_sd(t, a->n_rs, &a->test_m, &a->test_sd);
        rs_mean_sd(e, a->n_rs, &a->e95_m, &a->e95_sd);
        rs_mean_sd(p, a->n_rs, &a->prim_m, &a->prim_sd);
        free(t); free(e); free(p);
        arm_stat(c, a, c->rpg, &a->rpg_m, &a->rpg_sd, &a->n_rpg);
        a->censor_at = NAN;
        for (int j = 0; j < a->n_rs; j++) {
            int i = a->rs[j];
            if (c->censored[i]) {
                a->censored = 1;
                if (a->censor_at != a->censor_at || c->steps[i] > a->censor_at) a->censor_at = c->steps[i];
            } else if (c->steps[i] == c->steps[i]) {
                a->n_reached++;
            }
        }
        arm_stat(c, a, c->steps, &a->steps_m, &a->steps_sd, NULL);
        arm_stat(c, a, c->secs, &a->secs_m, &a->secs_sd, NULL);
        /* the main correlations: pretrained arms that are no negative control */
        a->in_main = !a->is_scratch;
        for (int k = 0; k < in->n_ctrl; k++)
            if (in->ctrl[k].kind == RP_CTRL_NEGATIVE &&
                in_list(a->weights, (const char (*)[RP_NAME])in->ctrl[k].arms, in->ctrl[k].n_arms))
                a->in_main = 0;
    }
}

/* ---- correlations --------------------------------------------------------------------------- */
typedef enum { Y_RPG = 0, Y_STEPS = 1 } YKind;
static const char* YNAME[2] = {"RPG", "steps"};

/* which runs enter: arms with in_main (or listed in `arms` when n_arms > 0), the selected
 * setting (or every setting when all_settings), task t (or all when t < 0) */
static void correlate(const Ctx* c, const char* est, const char* layer, YKind yk, int by_group,
                      int all_settings, int task, const char (*arms)[RP_NAME], int n_arms, RsCorr* out) {
    const RpInput* in = c->in;
    RsObs* obs = xmalloc((size_t)(in->n_runs + 1) * sizeof(RsObs));
    int m = 0;
    for (int i = 0; i < in->n_runs; i++) {
        int ai = c->arm_of[i];
        if (ai < 0) continue;
        const Arm* a = &c->arms[ai];
        if (n_arms > 0 ? !in_list(a->weights, arms, n_arms) : !a->in_main) continue;
        if (!all_settings && !c->sel[i]) continue;
        if (task >= 0 && a->task_idx != task) continue;
        double x = run_stat(&in->runs[i], est, layer);
        double y = yk == Y_RPG ? c->rpg[i] : c->steps[i];
        /* censored: a censored arm leaves the arm-level correlation, a censored run the
         * run-level one */
        if (yk == Y_STEPS && (by_group ? a->censored : c->censored[i])) continue;
        if (x != x || y != y) continue;
        obs[m].cluster = a->task_idx;
        obs[m].unit = c->unit[i];
        obs[m].group = ai;
        obs[m].x = x;
        obs[m].y = y;
        m++;
    }
    rs_correlate(obs, m, by_group, c->opt->seed, c->opt->n_boot, c->opt->n_perm, out);
    free(obs);
}

/* ---- printing ------------------------------------------------------------------------------- */
static void fmt_pm(char* b, size_t n, double m, double sd, const char* f) {
    char fm[64];
    if (m != m) { snprintf(b, n, "–"); return; }
    if (sd == sd && sd <= 1e-12 * fabs(m)) sd = 0;   /* equal values averaged: rounding, not spread */
    if (fabs(m) < 1e-12) m = 0;   /* e.g. RPG of the scratch arm: rounding noise, printed "-0.00" */
    if (sd == sd) snprintf(fm, sizeof fm, "%s ± %s", f, f);
    else snprintf(fm, sizeof fm, "%s", f);
    snprintf(b, n, fm, m, sd);
}
static void fmt_ci(char* b, size_t n, double r, double lo, double hi) {
    if (r != r) snprintf(b, n, "–");
    else if (lo != lo) snprintf(b, n, "%+.3f", r);
    else snprintf(b, n, "%+.3f [%+.3f, %+.3f]", r, lo, hi);
}
static void fmt_p(char* b, size_t n, double p) {
    if (p != p) snprintf(b, n, "–");
    else snprintf(b, n, "%.4f", p);
}

/* n column: the points, and how many bootstrap draws gave a defined r when some did not
 * (a draw of fewer than 3 distinct points has none) */
static void print_corr_row(FILE* o, const char* scope, const char* x, YKind yk, const RsCorr* k, int n_boot) {
    char r[64], rp[32], s[64], sp[32], n[64];
    if (n_boot > 0 && k->n_points >= 3 && k->n_boot_r < n_boot)
        snprintf(n, sizeof n, "%d (CI from %d of %d draws)", k->n_points, k->n_boot_r, n_boot);
    else
        snprintf(n, sizeof n, "%d", k->n_points);
    fmt_ci(r, sizeof r, k->r, k->r_lo, k->r_hi);
    fmt_p(rp, sizeof rp, k->r_p);
    fmt_ci(s, sizeof s, k->rho, k->rho_lo, k->rho_hi);
    fmt_p(sp, sizeof sp, k->rho_p);
    fprintf(o, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", scope, x, YNAME[yk], n, r, rp, s, sp);
}

/* ---- CSV ------------------------------------------------------------------------------------ */
typedef struct {
    FILE* f;
    char tmp[1200], path[1100];
} Csv;
static int csv_open(Csv* c, const char* path, char* err, size_t errlen) {
    snprintf(c->path, sizeof c->path, "%s", path);
    snprintf(c->tmp, sizeof c->tmp, "%s.tmp.%ld", path, (long)getpid());
    c->f = fopen(c->tmp, "w");
    if (!c->f) return vita_fail(err, errlen, "cannot write %s: %s (is the directory writable?)", c->tmp, strerror(errno));
    return 0;
}
/* durable, then atomic: fsync the temp file, rename it over the target */
static int csv_close(Csv* c, char* err, size_t errlen) {
    int bad = fflush(c->f) != 0 || fsync(fileno(c->f)) != 0;
    bad |= fclose(c->f) != 0;
    if (!bad && rename(c->tmp, c->path) != 0) bad = 1;
    if (bad) {
        vita_fail(err, errlen, "cannot write %s: %s (disk full?)", c->path, strerror(errno));
        unlink(c->tmp);
    }
    return bad;
}
static void csv_num(FILE* f, double v) {
    if (v == v) fprintf(f, ",%.9g", v);
    else fprintf(f, ",");
}

static void corr_csv_row(FILE* f, const char* scope, const char* role, const char* est,
                         const char* layer, YKind yk, const RsCorr* k) {
    fprintf(f, "%s,%s,%s,%s,%s,%d", scope, role, est, layer, yk == Y_RPG ? "rpg" : "steps", k->n_points);
    double v[8] = {k->r, k->r_lo, k->r_hi, k->r_p, k->rho, k->rho_lo, k->rho_hi, k->rho_p};
    for (int i = 0; i < 8; i++) csv_num(f, v[i]);
    fprintf(f, ",%d,%d\n", k->n_boot_r, k->n_boot_rho);
}

static int write_arm_csv(const Ctx* c, Csv* cv, char* err, size_t errlen) {
    const RpInput* in = c->in;
    FILE* f = cv->f;
    fprintf(f, "weights,task,metric,higher_is_better,is_scratch,in_main,selected_lr,selected_setting,n_runs,"
            "test_mean,test_sd,rpg_mean,rpg_sd,rpg_n,rpg_unmatched,steps_mean,steps_sd,steps_censored,"
            "steps_reached,censored_at_steps,secs_mean,secs_sd,epochs_to_95_mean,epochs_to_95_sd,"
            "primary_estimator,primary_layer,primary_mean,primary_sd");
    static const char* per[3] = {"mmd2_paired", "cka_linear", "weight_dist"};
    for (int l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < 3; k++) fprintf(f, ",%s_%s_mean,%s_%s_sd", per[k], c->layers[l], per[k], c->layers[l]);
        fprintf(f, ",mmd2_paired_%s_vs_floor,mmd2_paired_%s_vs_floor_kind", c->layers[l], c->layers[l]);
    }
    fprintf(f, "\n");
    for (int ai = 0; ai < c->n_arms; ai++) {
        const Arm* a = &c->arms[ai];
        fprintf(f, "%s,%s,%s,%d,%d,%d", a->weights, a->task, a->metric, a->higher, a->is_scratch, a->in_main);
        csv_num(f, a->set[a->sel].lr);
        fprintf(f, ",%s,%d", a->set[a->sel].key, a->n_rs);
        double v1[4] = {a->test_m, a->test_sd, a->rpg_m, a->rpg_sd};
        for (int i = 0; i < 4; i++) csv_num(f, v1[i]);
        fprintf(f, ",%d,%d", a->n_rpg, a->n_unmatched);
        csv_num(f, a->censored ? NAN : a->steps_m);
        csv_num(f, a->censored ? NAN : a->steps_sd);
        fprintf(f, ",%d,%d", a->censored, a->n_reached);
        double v2[5] = {a->censor_at, a->censored ? NAN : a->secs_m, a->censored ? NAN : a->secs_sd,
                        a->e95_m, a->e95_sd};
        for (int i = 0; i < 5; i++) csv_num(f, v2[i]);
        fprintf(f, ",%s,%s", in->primary_est, in->primary_layer);
        csv_num(f, a->prim_m);
        csv_num(f, a->prim_sd);
        for (int l = 0; l < c->n_layers; l++) {
            double* x = xmalloc((size_t)(a->n_rs + 1) * sizeof(double));
            double m0 = NAN, fl = NAN;
            for (int k = 0; k < 3; k++) {
                for (int j = 0; j < a->n_rs; j++) x[j] = run_stat(&in->runs[a->rs[j]], per[k], c->layers[l]);
                double m, sd;
                rs_mean_sd(x, a->n_rs, &m, &sd);
                csv_num(f, m);
                csv_num(f, sd);
                if (k == 0) m0 = m;
            }
            for (int j = 0; j < a->n_rs; j++) x[j] = run_floor(&in->runs[a->rs[j]], c->layers[l]);
            double sd;
            rs_mean_sd(x, a->n_rs, &fl, &sd);
            int ratio;
            double rel = rel_floor(m0, fl, &ratio);
            csv_num(f, rel);
            fprintf(f, ",%s", rel != rel ? "" : ratio ? "ratio" : "difference");
            free(x);
        }
        fprintf(f, "\n");
    }
    return csv_close(cv, err, errlen);
}

/* ---- the report ----------------------------------------------------------------------------- */
int rp_report(const RpInput* in, const RpOptions* opt, FILE* o, char* err, size_t errlen) {
    Ctx cx;
    memset(&cx, 0, sizeof cx);
    cx.in = in;
    cx.opt = opt;
    Ctx* c = &cx;
    int usable = 0;
    for (int i = 0; i < in->n_runs; i++) usable += in->runs[i].status == 0;
    const char* scratch = in->scratch[0] ? in->scratch : "scratch";

    fprintf(o, "# vita report\n\n");
    fprintf(o, "runs: %d listed, %d usable, %d skipped\n", in->n_runs, usable, in->n_runs - usable);
    for (int i = 0; i < in->n_runs; i++)
        if (in->runs[i].status)
            fprintf(o, "- skipped run %s (%s): %s\n", in->runs[i].id, in->runs[i].dir, in->runs[i].why);
    if (!usable) {
        vita_fail(err, errlen, "no finished run among %d listed (every run is missing or unfinished; "
             "see the list above)", in->n_runs);
        return 1;
    }
    /* the CSV temp files first, so that an unwritable path fails before any analysis */
    Csv cc, ca;
    FILE* cf = NULL;
    char cpath[1100];
    if (opt->csv) {
        size_t L = strlen(opt->csv);
        if (L > 4 && !strcmp(opt->csv + L - 4, ".csv"))
            snprintf(cpath, sizeof cpath, "%.*s.corr.csv", (int)(L - 4), opt->csv);
        else
            snprintf(cpath, sizeof cpath, "%s.corr.csv", opt->csv);
        if (csv_open(&ca, opt->csv, err, errlen)) return 1;
        if (csv_open(&cc, cpath, err, errlen)) {
            fclose(ca.f);
            unlink(ca.tmp);
            return 1;
        }
        cf = cc.f;
        fprintf(cf, "scope,role,estimator,layer,y,n,r,r_lo,r_hi,r_p,rho,rho_lo,rho_hi,rho_p,n_boot_r,n_boot_rho\n");
    }
    build(c);
    fprintf(o, "\nprimary statistic: %s at layer %s%s%s (%s); scratch arm: '%s'\n", in->primary_est,
            in->primary_layer, in->primary_feature[0] ? ", feature " : "", in->primary_feature,
            in->primary_source[0] ? in->primary_source : "default", scratch);
    for (int i = 0; i < in->n_runs; i++) {
        const RpRun* r = &in->runs[i];
        if (!r->status && in->primary_feature[0] && r->feature_kind[0] &&
            strcmp(r->feature_kind, in->primary_feature)) {
            fprintf(o, "WARNING: run %s logs feature kind '%s', the primary analysis declares '%s'\n",
                    r->dir, r->feature_kind, in->primary_feature);
            break;
        }
    }

    for (int ai = 0; ai < c->n_arms; ai++) {
        const Arm* a = &c->arms[ai];
        for (int j = 0; j < a->n_rs; j++)
            for (int q = 0; q < j; q++)
                if (c->unit[a->rs[j]] == c->unit[a->rs[q]]) {
                    fprintf(o, "WARNING: arm %s/%s has several runs of one seed and fold in its selected "
                            "setting (e.g. %s and %s): they count as separate replicates\n", a->weights,
                            a->task, in->runs[a->rs[q]].dir, in->runs[a->rs[j]].dir);
                    q = j = a->n_rs;
                }
    }

    /* selection */
    fprintf(o, "\n## Setting selection (validation metric: mean over seeds of each run's best epoch)\n\n");
    fprintf(o, "| weights | task | metric | setting | runs | best val (mean) | selected |\n");
    fprintf(o, "|---|---|---|---|---|---|---|\n");
    for (int ai = 0; ai < c->n_arms; ai++) {
        const Arm* a = &c->arms[ai];
        for (int s = 0; s < a->n_set; s++)
            fprintf(o, "| %s | %s | %s%s | %s | %d | %.4f | %s |\n", a->weights, a->task, a->metric,
                    a->higher ? " ↑" : " ↓", a->set[s].key, a->set[s].n, a->set[s].best_val_mean,
                    s == a->sel ? "yes" : "");
    }

    /* arms */
    fprintf(o, "\n## Arms: TEST metric of the validation-selected checkpoint (mean ± SD over seeds)\n\n");
    fprintf(o, "RPG %% = (m − m_%s)/|m_%s| × 100 per seed-matched pair (sign flipped when lower is better). "
            "Steps / seconds: until the validation curve first reaches the scratch arm's mean test metric; "
            "\">N\" = not reached by N steps (censored, left out of the correlations).\n\n", scratch, scratch);
    fprintf(o, "| weights | task | metric | setting | n | test | RPG %% | steps to scratch level | seconds | "
            "epochs to 95%% | %s@%s | vs noise floor |\n", in->primary_est, in->primary_layer);
    fprintf(o, "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int ai = 0; ai < c->n_arms; ai++) {
        const Arm* a = &c->arms[ai];
        char t[64], r[64], st[64], se[64], e9[64], pm[64], rel[64];
        fmt_pm(t, sizeof t, a->test_m, a->test_sd, "%.4f");
        fmt_pm(r, sizeof r, a->rpg_m, a->rpg_sd, "%.2f");
        if (a->censored) {
            snprintf(st, sizeof st, ">%.0f", a->censor_at);
            snprintf(se, sizeof se, "–");
        } else {
            fmt_pm(st, sizeof st, a->steps_m, a->steps_sd, "%.1f");
            fmt_pm(se, sizeof se, a->secs_m, a->secs_sd, "%.1f");
        }
        fmt_pm(e9, sizeof e9, a->e95_m, a->e95_sd, "%.1f");
        fmt_pm(pm, sizeof pm, a->prim_m, a->prim_sd, "%.4g");
        double* fl = xmalloc((size_t)(a->n_rs + 1) * sizeof(double));
        for (int j = 0; j < a->n_rs; j++) fl[j] = run_floor(&in->runs[a->rs[j]], in->primary_layer);
        double flm, fsd;
        rs_mean_sd(fl, a->n_rs, &flm, &fsd);
        free(fl);
        int ratio;
        double rv = rel_floor(a->prim_m, flm, &ratio);
        if (strncmp(in->primary_est, "mmd2", 4) || rv != rv) snprintf(rel, sizeof rel, "–");
        else if (ratio) snprintf(rel, sizeof rel, "%.3g× floor", rv);
        else snprintf(rel, sizeof rel, "%+.3g (floor ≤ 0: difference)", rv);
        fprintf(o, "| %s | %s | %s | %s | %d | %s | %s%s | %s | %s | %s | %s | %s |\n", a->weights, a->task,
                a->metric, a->set[a->sel].key, a->n_rs, t, r, a->n_unmatched ? " (unmatched seeds vs mean)" : "",
                st, se, e9, pm, rel);
    }

    /* per layer */
    fprintf(o, "\n## Per layer at the last logged epoch (mean over seeds of the selected setting)\n\n");
    fprintf(o, "| weights | task | layer | mmd2_paired | vs noise floor | cka_linear | weight_dist |\n");
    fprintf(o, "|---|---|---|---|---|---|---|\n");
    for (int ai = 0; ai < c->n_arms; ai++) {
        const Arm* a = &c->arms[ai];
        for (int l = 0; l < c->n_layers; l++) {
            double v[4];
            double* x = xmalloc((size_t)(a->n_rs + 1) * sizeof(double));
            static const char* per[3] = {"mmd2_paired", "cka_linear", "weight_dist"};
            double sd;
            for (int k = 0; k < 3; k++) {
                for (int j = 0; j < a->n_rs; j++) x[j] = run_stat(&in->runs[a->rs[j]], per[k], c->layers[l]);
                rs_mean_sd(x, a->n_rs, &v[k], &sd);
            }
            for (int j = 0; j < a->n_rs; j++) x[j] = run_floor(&in->runs[a->rs[j]], c->layers[l]);
            rs_mean_sd(x, a->n_rs, &v[3], &sd);
            free(x);
            int ratio;
            double rv = rel_floor(v[0], v[3], &ratio);
            char rel[64];
            if (rv != rv) snprintf(rel, sizeof rel, "–");
            else if (ratio) snprintf(rel, sizeof rel, "%.3g× floor", rv);
            else snprintf(rel, sizeof rel, "%+.3g (difference)", rv);
            fprintf(o, "| %s | %s | %s | %.4g | %s | %.4f | %.4f |\n", a->weights, a->task, c->layers[l],
                    v[0], rel, v[1], v[2]);
        }
    }

    /* correlations */
    char main_arms[1024];
    size_t k0 = 0;
    main_arms[0] = 0;
    for (int ai = 0; ai < c->n_arms; ai++) {
        const Arm* a = &c->arms[ai];
        if (!a->in_main || strstr(main_arms, a->weights)) continue;
        k0 += (size_t)snprintf(main_arms + k0, sizeof main_arms - (k0 < sizeof main_arms ? k0 : sizeof main_arms),
                               "%s%s", k0 ? ", " : "", a->weights);
        if (k0 >= sizeof main_arms) break;
    }
    char xname[160];
    snprintf(xname, sizeof xname, "%s@%s", in->primary_est, in->primary_layer);
    fprintf(o, "\n## Correlations, PRIMARY (%s)\n\n", xname);
    fprintf(o, "Across arms: one point per (weights, task) = mean over seeds; arms: %s (scratch and "
            "negative-control arms excluded). Within a task: one point per run, every setting and "
            "seed. 95%% CIs: percentile bootstrap resampling tasks and seeds within them (%d draws, "
            "seed %llu); p: two-sided permutation test (%d draws). Censored convergence left out.\n\n",
            main_arms[0] ? main_arms : "none", opt->n_boot, (unsigned long long)opt->seed, opt->n_perm);
    fprintf(o, "| scope | x | y | n | Pearson r [95%% CI] | p | Spearman ρ [95%% CI] | p |\n");
    fprintf(o, "|---|---|---|---|---|---|---|---|\n");
    RsCorr k;
    for (int y = 0; y < 2; y++) {
        correlate(c, in->primary_est, in->primary_layer, (YKind)y, 1, 0, -1, NULL, 0, &k);
        print_corr_row(o, "across arms", xname, (YKind)y, &k, opt->n_boot);
        if (cf) corr_csv_row(cf, "across", "primary", in->primary_est, in->primary_layer, (YKind)y, &k);
    }
    for (int t = 0; t < c->n_tasks; t++)
        for (int y = 0; y < 2; y++) {
            char scope[128];
            snprintf(scope, sizeof scope, "within %s", c->tasks[t]);
            correlate(c, in->primary_est, in->primary_layer, (YKind)y, 0, 1, t, NULL, 0, &k);
            print_corr_row(o, scope, xname, (YKind)y, &k, opt->n_boot);
            if (cf) {
                snprintf(scope, sizeof scope, "within:%s", c->tasks[t]);
                corr_csv_row(cf, scope, "primary", in->primary_est, in->primary_layer, (YKind)y, &k);
            }
        }

    fprintf(o, "\n## Correlations, SECONDARY (every other estimator and layer; across arms; exploratory)\n\n");
    fprintf(o, "| scope | x | y | n | Pearson r [95%% CI] | p | Spearman ρ [95%% CI] | p |\n");
    fprintf(o, "|---|---|---|---|---|---|---|---|\n");
    for (int e = 0; e < c->n_est; e++)
        for (int l = 0; l < c->n_layers; l++) {
            if (!strcmp(c->est[e], in->primary_est) && !strcmp(c->layers[l], in->primary_layer)) continue;
            char xn[160];
            snprintf(xn, sizeof xn, "%s@%s", c->est[e], c->layers[l]);
            for (int y = 0; y < 2; y++) {
                correlate(c, c->est[e], c->layers[l], (YKind)y, 1, 0, -1, NULL, 0, &k);
                if (k.n_points == 0) continue;   /* the estimator was not logged by these arms */
                print_corr_row(o, "SECONDARY across arms", xn, (YKind)y, &k, opt->n_boot);
                if (cf) corr_csv_row(cf, "across", "secondary", c->est[e], c->layers[l], (YKind)y, &k);
            }
        }

    /* controls */
    /* a similarity (CKA: 1 = unchanged) runs opposite to a distance: "moved less" is a higher
     * value, and the paper's relation with RPG is positive instead of negative */
    int sim = !strncmp(in->primary_est, "cka", 3);
    if (in->n_ctrl) fprintf(o, "\n## Controls\n\n");
    for (int q = 0; q < in->n_ctrl; q++) {
        const RpControl* ct = &in->ctrl[q];
        if (ct->kind == RP_CTRL_POSITIVE) {
            int n_eval = 0, n_pass = 0;
            fprintf(o, "positive control: aligned '%s' vs reference '%s' (aligned must have higher RPG "
                    "AND %s %s)\n", ct->aligned, ct->reference, sim ? "higher" : "lower", xname);
            for (int t = 0; t < c->n_tasks; t++) {
                const Arm *al = find_arm(c, ct->aligned, c->tasks[t]), *rf = find_arm(c, ct->reference, c->tasks[t]);
                if (!al || !rf || al->rpg_m != al->rpg_m || rf->rpg_m != rf->rpg_m || al->prim_m != al->prim_m ||
                    rf->prim_m != rf->prim_m) {
                    fprintf(o, "- %s: n/a (an arm, its RPG or its %s is missing)\n", c->tasks[t], xname);
                    continue;
                }
                int pass = al->rpg_m > rf->rpg_m && (sim ? al->prim_m > rf->prim_m : al->prim_m < rf->prim_m);
                n_eval++;
                n_pass += pass;
                fprintf(o, "- %s: %s (RPG %.2f vs %.2f; %s %.4g vs %.4g)\n", c->tasks[t], pass ? "PASS" : "FAIL",
                        al->rpg_m, rf->rpg_m, xname, al->prim_m, rf->prim_m);
            }
            fprintf(o, "positive control overall: %s (%d of %d tasks pass)\n",
                    n_eval == 0 ? "n/a" : n_pass == n_eval ? "PASS" : "FAIL", n_pass, n_eval);
        } else {
            char list[1024];
            size_t kk = 0;
            list[0] = 0;
            for (int j = 0; j < ct->n_arms && kk < sizeof list; j++)
                kk += (size_t)snprintf(list + kk, sizeof list - kk, "%s%s", j ? ", " : "", ct->arms[j]);
            correlate(c, in->primary_est, in->primary_layer, Y_RPG, 0, 0, -1, ct->arms, ct->n_arms, &k);
            const char* outcome;
            if (k.r != k.r || k.n_points < 3) outcome = "n/a (fewer than 3 runs with both numbers)";
            else if (sim ? k.r <= 0 : k.r >= 0) outcome = sim ? "PASS (reverses: r <= 0)" : "PASS (reverses: r >= 0)";
            else if (k.r_lo != k.r_lo) outcome = "n/a (no bootstrap CI)";
            else if (k.r_lo <= 0 && k.r_hi >= 0) outcome = "PASS (vanishes: CI contains 0)";
            else outcome = sim ? "FAIL (persists: r > 0 and the CI excludes 0)" : "FAIL (persists: r < 0 and the CI excludes 0)";
            char r[64];
            fmt_ci(r, sizeof r, k.r, k.r_lo, k.r_hi);
            fprintf(o, "negative control [%s]: %s vs RPG over %d runs: r = %s -> %s\n", list, xname,
                    k.n_points, r, outcome);
            if (cf) {
                char scope[1100];
                snprintf(scope, sizeof scope, "negative:%s", list);
                for (char* p = scope; *p; p++)
                    if (*p == ',') *p = ';';
                corr_csv_row(cf, scope, "control", in->primary_est, in->primary_layer, Y_RPG, &k);
            }
        }
    }
    int bad = 0;
    if (cf) bad = csv_close(&cc, err, errlen);
    if (opt->csv) {
        bad |= write_arm_csv(c, &ca, err, errlen);
        if (!bad) fprintf(o, "\nwrote %s and %s\n", opt->csv, cpath);
    }
    for (int ai = 0; ai < c->n_arms; ai++) { free(c->arms[ai].runs); free(c->arms[ai].rs); }
    free(c->arms); free(c->rpg); free(c->steps); free(c->secs); free(c->censored); free(c->sel);
    free(c->unit); free(c->arm_of);
    return bad;
}
