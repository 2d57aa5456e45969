/* engine/cmd_report.c — `vita report DIR... [--csv OUT.csv] [--seed S] [--bootstrap B]
 * [--permutations B] [--primary layer=..,estimator=..]`: reads sweep and run directories
 * (report_input.c), prints the paper's table, correlations and controls (report.c).
 * Exit codes: 0 ok, 1 user error (one line), 2 internal error. */
#include "commands.h"
#include "check.h"
#include "report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char* REPORT_USAGE =
    "usage: vita report DIR... [options]\n"
    "\n"
    "The paper's table from finished runs: DIR is a sweep directory of vita sweep (sweep.yaml +\n"
    "index.tsv) or a run directory of vita train (log.h5). Missing or unfinished runs are listed\n"
    "and skipped. Arms = (weights, task); each arm's lr (and extra axes) is selected on the\n"
    "validation metric; the TEST metric of the validation-selected checkpoint is reported with\n"
    "the relative performance gain (RPG) over the scratch arm, convergence, and alignment.\n"
    "\n"
    "options:\n"
    "  --csv OUT.csv        one row per arm with every number; correlations in OUT.corr.csv\n"
    "                       (what tools/plot.py reads)\n"
    "  --primary SPEC       layer=L,estimator=NAME[,feature=KIND] (default: sweep.yaml's\n"
    "                       primary, else layer=norm,estimator=mmd2_paired)\n"
    "  --bootstrap B        bootstrap draws for the 95% CIs (default 2000; 0 = none)\n"
    "  --permutations B     permutation draws for the p-values (default 2000; 0 = none)\n"
    "  --seed S             seed of the bootstrap and permutations (default 0)\n"
    "  --device D --threads N --quiet   accepted like every command (no effect: the report\n"
    "                       does no tensor work)\n"
    "  --help\n"
    "exit codes: 0 ok, 1 bad input (one line naming the directory, file or flag), 2 internal error\n";

static long parse_count(const char* flag, const char* v) {
    char* end;
    long x = v ? strtol(v, &end, 10) : -1;
    if (!v || *end || x < 0 || x > 100000000)
        USER_ERROR("%s needs a whole number >= 0 (got '%s')", flag, v ? v : "");
    return x;
}

int cmd_report(int argc, char** argv) {
    RpInput in;
    memset(&in, 0, sizeof in);
    RpOptions opt = {0, 2000, 2000, NULL};
    const char* primary = NULL;
    const char** dirs = xcalloc((size_t)argc + 1, sizeof(char*));
    int nd = 0;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(REPORT_USAGE, stdout);
            free(dirs);
            return 0;
        } else if (!strcmp(a, "--csv")) {
            if (!v) USER_ERROR("--csv needs a file name (e.g. --csv report.csv)");
            opt.csv = v;
            i++;
        } else if (!strcmp(a, "--seed")) {
            opt.seed = (uint64_t)parse_count("--seed", v);
            i++;
        } else if (!strcmp(a, "--bootstrap")) {
            opt.n_boot = (int)parse_count("--bootstrap", v);
            i++;
        } else if (!strcmp(a, "--permutations")) {
            opt.n_perm = (int)parse_count("--permutations", v);
            i++;
        } else if (!strcmp(a, "--primary")) {
            if (!v) USER_ERROR("--primary needs layer=L,estimator=NAME (e.g. --primary layer=norm,estimator=mmd2_paired)");
            primary = v;
            i++;
        } else if (!strcmp(a, "--device") || !strcmp(a, "--threads")) {
            if (!v) USER_ERROR("%s needs a value (see vita report --help)", a);
            i++;   /* accepted like every command; the report does no tensor work */
        } else if (!strcmp(a, "--quiet")) {
        } else if (a[0] == '-' && a[1]) {
            USER_ERROR("report: unknown option '%s' (see vita report --help)", a);
        } else {
            dirs[nd++] = a;
        }
    }
    if (!nd) USER_ERROR("report: no directory given (usage: vita report DIR... [--csv OUT.csv]; see --help)");
    char err[1400];
    if (primary && rp_parse_primary(&in, primary, err, sizeof err)) USER_ERROR("%s", err);
    for (int i = 0; i < nd; i++)
        if (rp_add_dir(&in, dirs[i], err, sizeof err)) USER_ERROR("%s", err);
    free(dirs);
    if (!in.primary_layer[0]) {
        snprintf(in.primary_layer, RP_NAME, "norm");
        snprintf(in.primary_est, RP_NAME, "mmd2_paired");
    }
    int rc = rp_report(&in, &opt, stdout, err, sizeof err);
    fflush(stdout);
    rp_input_free(&in);
    if (rc) USER_ERROR("%s", err);
    return 0;
}
