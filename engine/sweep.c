/* engine/sweep.c — sweep files: parse (libyaml document tree), check, expand runs, emit the
 * resolved form. Format and semantics: sweep.h. Values travel to the config loader as YAML
 * flow text ("--set k=v"), so every value is checked by engine/config.c exactly as a --set on
 * the command line would be; this file checks only what the config loader cannot see (axis
 * names, empty or repeated values, labels, paths, the primary analysis' shape). */
#include "sweep.h"
#include "check.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

typedef struct {
    yaml_document_t doc;
    const char* file;
    char* err;
    size_t errlen;
} P;

static int perr(P* p, const yaml_node_t* n, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
static int perr(P* p, const yaml_node_t* n, const char* fmt, ...) {
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n) snprintf(p->err, p->errlen, "%s:%d: %s", p->file, (int)n->start_mark.line + 1, msg);
    else snprintf(p->err, p->errlen, "%s: %s", p->file, msg);
    return 1;
}

static char* sdup(const char* s) {
    size_t n = strlen(s) + 1;
    char* d = xmalloc(n);
    memcpy(d, s, n);
    return d;
}

static yaml_node_t* N(P* p, int id) { return yaml_document_get_node(&p->doc, id); }
static const char* scalar(const yaml_node_t* n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char*)n->data.scalar.value : NULL;
}
static int is_null(const yaml_node_t* n) {
    const char* s = scalar(n);
    return s && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (!*s || !strcmp(s, "null") || !strcmp(s, "~") || !strcmp(s, "Null") || !strcmp(s, "NULL"));
}

/* a node as YAML flow text (quoted scalars re-quoted, so "0001" stays a string) */
static void flow(P* p, const yaml_node_t* n, char* out, size_t cap) {
    size_t len = strlen(out);
    if (n->type == YAML_SCALAR_NODE) {
        const char* s = scalar(n);
        if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
            snprintf(out + len, cap - len, "%s", s);
            return;
        }
        if (len + 1 < cap) { out[len++] = '"'; out[len] = 0; }
        for (; *s && len + 3 < cap; s++) {
            if (*s == '"' || *s == '\\') out[len++] = '\\';
            out[len++] = *s;
        }
        if (len + 1 < cap) out[len++] = '"';
        out[len] = 0;
    } else if (n->type == YAML_SEQUENCE_NODE) {
        snprintf(out + len, cap - len, "[");
        for (yaml_node_item_t* it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
            if (it != n->data.sequence.items.start) strncat(out, ", ", cap - strlen(out) - 1);
            flow(p, N(p, *it), out, cap);
        }
        strncat(out, "]", cap - strlen(out) - 1);
    } else {
        snprintf(out + len, cap - len, "{");
        for (yaml_node_pair_t* q = n->data.mapping.pairs.start; q < n->data.mapping.pairs.top; q++) {
            if (q != n->data.mapping.pairs.start) strncat(out, ", ", cap - strlen(out) - 1);
            flow(p, N(p, q->key), out, cap);
            strncat(out, ": ", cap - strlen(out) - 1);
            flow(p, N(p, q->value), out, cap);
        }
        strncat(out, "}", cap - strlen(out) - 1);
    }
}

/* a mapping's keys must be scalars and distinct */
static int check_map(P* p, const yaml_node_t* n, const char* what) {
    if (!n || n->type != YAML_MAPPING_NODE) return perr(p, n, "%s: expected a mapping (key: value)", what);
    for (yaml_node_pair_t* a = n->data.mapping.pairs.start; a < n->data.mapping.pairs.top; a++) {
        const char* ka = scalar(N(p, a->key));
        if (!ka) return perr(p, N(p, a->key), "%s: keys must be plain names", what);
        for (yaml_node_pair_t* b = n->data.mapping.pairs.start; b < a; b++)
            if (!strcmp(ka, scalar(N(p, b->key))))
                return perr(p, N(p, a->key), "%s.%s given twice: keep one", what, ka);
    }
    return 0;
}

static yaml_node_t* get(P* p, const yaml_node_t* map, const char* key) {
    for (yaml_node_pair_t* q = map->data.mapping.pairs.start; q < map->data.mapping.pairs.top; q++)
        if (!strcmp(scalar(N(p, q->key)), key)) return N(p, q->value);
    return NULL;
}

static int only_keys(P* p, const yaml_node_t* map, const char* what, const char* const* allowed) {
    for (yaml_node_pair_t* q = map->data.mapping.pairs.start; q < map->data.mapping.pairs.top; q++) {
        const char* k = scalar(N(p, q->key));
        int ok = 0;
        char list[400] = "";
        for (int i = 0; allowed[i]; i++) {
            ok |= !strcmp(k, allowed[i]);
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", allowed[i]);
        }
        if (!ok) return perr(p, N(p, q->key), "%s%s%s: unknown key (use %s)", what, *what ? "." : "", k, list);
    }
    return 0;
}

/* a short scalar into out */
static int get_name(P* p, const yaml_node_t* n, const char* what, char* out, size_t cap) {
    const char* s = scalar(n);
    if (!s || !*s || is_null(n)) return perr(p, n, "%s: expected a name", what);
    if (strlen(s) >= cap) return perr(p, n, "%s: '%s' is longer than %zu characters", what, s, cap - 1);
    if (strpbrk(s, "\t\n\r")) return perr(p, n, "%s: '%s' holds a tab or newline", what, s);
    snprintf(out, cap, "%s", s);
    return 0;
}

int sweep_abs_path(const char* dir, const char* rel, char* out, size_t cap) {
    char cwd[SWEEP_PATH], tmp[2 * SWEEP_PATH + 2];
    if (!dir && rel[0] != '/') {
        if (!getcwd(cwd, sizeof cwd)) return 1;
        dir = cwd;
    }
    if (rel[0] == '/') snprintf(tmp, sizeof tmp, "%s", rel);
    else snprintf(tmp, sizeof tmp, "%s/%s", dir, rel);
    if (strlen(tmp) + 1 >= sizeof tmp) return 1;
    size_t n = 0;
    out[0] = 0;
    char* save = NULL;
    for (char* seg = strtok_r(tmp, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
        if (!strcmp(seg, ".")) continue;
        if (!strcmp(seg, "..")) {   /* lexical: never touches the disk, so DIR need not exist */
            char* sl = strrchr(out, '/');
            n = sl ? (size_t)(sl - out) : 0;
            out[n] = 0;
            continue;
        }
        if (n + strlen(seg) + 2 > cap) return 1;
        n += (size_t)snprintf(out + n, cap - n, "/%s", seg);
    }
    if (!n) snprintf(out, cap, "/");
    return 0;
}

/* appends a copy of str to the string array *v of n entries (n is not changed here) */
static void strv_push(char*** v, int n, const char* str) {
    *v = realloc(*v, sizeof(char*) * (size_t)(n + 1));
    CHECK(*v, "out of memory");
    (*v)[n] = sdup(str);
}

/* appends a zeroed element of size bytes to the array *arr of *n; returns it */
static void* push_zeroed(void* arr, int* n, size_t size) {
    void** a = arr;
    *a = realloc(*a, size * (size_t)(*n + 1));
    CHECK(*a, "out of memory");
    void* e = (char*)*a + size * (size_t)(*n)++;
    memset(e, 0, size);
    return e;
}

static void axis_push(SweepAxis* a, const char* label, const char* value) {
    strv_push(&a->labels, a->n, label);
    strv_push(&a->values, a->n, value);
    a->n++;
}

static int axis_unique(P* p, const yaml_node_t* n, const SweepAxis* a, const char* what) {
    for (int i = 0; i < a->n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(a->labels[i], a->labels[j]))
                return perr(p, n, "%s: '%s' appears twice: labels and values must be unique (runs would repeat)",
                            what, a->labels[i]);
    return 0;
}

/* a list of scalar values (task, lr, seed, fold, extra values) */
static int parse_values(P* p, const yaml_node_t* n, SweepAxis* a, const char* what) {
    if (!n || n->type != YAML_SEQUENCE_NODE) return perr(p, n, "%s: expected a list of values, e.g. [a, b]", what);
    if (n->data.sequence.items.top == n->data.sequence.items.start)
        return perr(p, n, "%s: empty axis: give at least one value (or remove the axis)", what);
    for (yaml_node_item_t* it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        yaml_node_t* v = N(p, *it);
        if (v->type != YAML_SCALAR_NODE) return perr(p, v, "%s: values must be scalars", what);
        char label[256] = "", val[512] = "";
        if (get_name(p, v, what, label, sizeof label)) return 1;
        flow(p, v, val, sizeof val);
        axis_push(a, label, val);
    }
    return axis_unique(p, n, a, what);
}

static int parse_weights(P* p, const yaml_node_t* n, SweepAxis* a, const char* dir) {
    char path[SWEEP_PATH], label[64], what[200];
    const int is_map = n && n->type == YAML_MAPPING_NODE;
    if (!n || (!is_map && n->type != YAML_SEQUENCE_NODE))
        return perr(p, n, "axes.weights: expected a map label: path (null = scratch) or a list of paths");
    if (is_map && check_map(p, n, "axes.weights")) return 1;
    int count = is_map ? (int)(n->data.mapping.pairs.top - n->data.mapping.pairs.start)
                       : (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (!count) return perr(p, n, "axes.weights: empty axis: give at least one weights file (null = scratch)");
    for (int i = 0; i < count; i++) {
        yaml_node_t* v = is_map ? N(p, n->data.mapping.pairs.start[i].value) : N(p, n->data.sequence.items.start[i]);
        if (is_map) {
            if (get_name(p, N(p, n->data.mapping.pairs.start[i].key), "axes.weights", label, sizeof label)) return 1;
        }
        snprintf(what, sizeof what, "axes.weights%s%s", is_map ? "." : "", is_map ? label : "");
        if (is_null(v)) {
            if (!is_map) snprintf(label, sizeof label, "scratch");
            axis_push(a, label, "null");
            continue;
        }
        const char* s = scalar(v);
        if (!s) return perr(p, v, "%s: expected a path or null", what);
        if (!is_map) {   /* label = file stem */
            const char* b = strrchr(s, '/');
            b = b ? b + 1 : s;
            size_t k = strcspn(b, ".");
            if (!k || k >= sizeof label) return perr(p, v, "%s: '%s' has no usable file stem; use a map label: path", what, s);
            snprintf(label, sizeof label, "%.*s", (int)k, b);
        }
        if (sweep_abs_path(dir, s, path, sizeof path)) return perr(p, v, "%s: path too long", what);
        if (access(path, R_OK))
            return perr(p, v, "%s: %s (%s) cannot be read: %s; pretrain or convert it first, or fix the path "
                        "(relative to the sweep file)", what, s, path, strerror(errno));
        char q[SWEEP_PATH + 8] = "";
        yaml_node_t tmp = *v;
        tmp.data.scalar.value = (yaml_char_t*)path;
        tmp.data.scalar.style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
        flow(p, &tmp, q, sizeof q);
        axis_push(a, label, q);
    }
    return axis_unique(p, n, a, "axes.weights");
}

static int parse_sets(P* p, const yaml_node_t* n, const char* what, const char* task, Sweep* s) {
    if (check_map(p, n, what)) return 1;
    for (yaml_node_pair_t* q = n->data.mapping.pairs.start; q < n->data.mapping.pairs.top; q++) {
        const char* k = scalar(N(p, q->key));
        if (!strcmp(k, "run.out") || !strcmp(k, "run.name"))
            return perr(p, N(p, q->key), "%s.%s: vita sweep sets run.out and run.name itself (DIR/runs/NNNN); "
                        "remove the key", what, k);
        char v[2048] = "";
        flow(p, N(p, q->value), v, sizeof v);
        if (task) {
            strv_push(&s->ts_task, s->n_task_set, task);
            strv_push(&s->ts_key, s->n_task_set, k);
            strv_push(&s->ts_val, s->n_task_set++, v);
        } else {
            strv_push(&s->set_keys, s->n_set, k);
            strv_push(&s->set_vals, s->n_set++, v);
        }
    }
    return 0;
}

static int weights_label(const Sweep* s, const char* l) {
    const SweepAxis* a = &s->axes[SWEEP_AX_WEIGHTS];
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->labels[i], l)) return i;
    return -1;
}

static int parse_controls(P* p, const yaml_node_t* n, Sweep* s) {
    if (n->type != YAML_SEQUENCE_NODE) return perr(p, n, "controls: expected a list of {kind: positive|negative, ...}");
    static const char* const ck[] = {"kind", "aligned", "reference", "arms", NULL};
    for (yaml_node_item_t* it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        yaml_node_t* c = N(p, *it);
        char what[64];
        snprintf(what, sizeof what, "controls[%d]", (int)(it - n->data.sequence.items.start));
        if (check_map(p, c, what) || only_keys(p, c, what, ck)) return 1;
        SweepControl* sc = push_zeroed(&s->controls, &s->n_controls, sizeof *sc);
        if (get_name(p, get(p, c, "kind"), what, sc->kind, sizeof sc->kind)) return 1;
        if (s->axes[SWEEP_AX_WEIGHTS].n == 0) return perr(p, c, "%s: controls compare weights arms; add axes.weights", what);
        if (!strcmp(sc->kind, "positive")) {
            if (get(p, c, "arms")) return perr(p, c, "%s: a positive control takes aligned and reference, not arms", what);
            if (get_name(p, get(p, c, "aligned"), what, sc->aligned, sizeof sc->aligned) ||
                get_name(p, get(p, c, "reference"), what, sc->reference, sizeof sc->reference))
                return 1;
            const char* l[2] = {sc->aligned, sc->reference};
            for (int i = 0; i < 2; i++)
                if (weights_label(s, l[i]) < 0)
                    return perr(p, c, "%s: '%s' is not a label of axes.weights", what, l[i]);
            if (!strcmp(sc->aligned, sc->reference)) return perr(p, c, "%s: aligned and reference are the same arm", what);
        } else if (!strcmp(sc->kind, "negative")) {
            yaml_node_t* a = get(p, c, "arms");
            if (get(p, c, "aligned") || get(p, c, "reference"))
                return perr(p, c, "%s: a negative control takes arms, not aligned/reference", what);
            if (!a || a->type != YAML_SEQUENCE_NODE || a->data.sequence.items.top == a->data.sequence.items.start)
                return perr(p, c, "%s.arms: give a list of weights labels", what);
            for (yaml_node_item_t* j = a->data.sequence.items.start; j < a->data.sequence.items.top; j++) {
                char l[64];
                if (get_name(p, N(p, *j), what, l, sizeof l)) return 1;
                if (weights_label(s, l) < 0) return perr(p, N(p, *j), "%s.arms: '%s' is not a label of axes.weights", what, l);
                strv_push(&sc->arms, sc->n_arms++, l);
            }
        } else {
            return perr(p, c, "%s.kind = %s: use positive or negative", what, sc->kind);
        }
    }
    return 0;
}

static const char* const BUILTIN_NAME[SWEEP_N_BUILTIN] = {"weights", "task", "lr", "seed", "fold"};
static const char* const BUILTIN_KEY[SWEEP_N_BUILTIN] = {"model.weights", "task.name", "train.lr", "run.seed",
                                                         "data.fold"};

static int parse_axes(P* p, const yaml_node_t* n, Sweep* s, const char* dir) {
    static const char* const ak[] = {"weights", "task", "lr", "seed", "fold", "extra", NULL};
    if (check_map(p, n, "axes") || only_keys(p, n, "axes", ak)) return 1;
    char what[200];
    for (int i = 0; i < SWEEP_N_BUILTIN; i++) {
        yaml_node_t* v = get(p, n, BUILTIN_NAME[i]);
        if (!v) continue;
        s->axes[i].present = 1;
        snprintf(what, sizeof what, "axes.%s", BUILTIN_NAME[i]);
        if (i == SWEEP_AX_WEIGHTS ? parse_weights(p, v, &s->axes[i], dir) : parse_values(p, v, &s->axes[i], what))
            return 1;
    }
    yaml_node_t* ex = get(p, n, "extra");
    if (!ex) return 0;
    if (ex->type != YAML_SEQUENCE_NODE) return perr(p, ex, "axes.extra: expected a list of {name, key, values}");
    static const char* const ek[] = {"name", "key", "values", NULL};
    for (yaml_node_item_t* it = ex->data.sequence.items.start; it < ex->data.sequence.items.top; it++) {
        yaml_node_t* e = N(p, *it);
        snprintf(what, sizeof what, "axes.extra[%d]", (int)(it - ex->data.sequence.items.start));
        if (check_map(p, e, what) || only_keys(p, e, what, ek)) return 1;
        SweepAxis* a = push_zeroed(&s->axes, &s->n_axes, sizeof *a);
        a->present = 1;
        if (get_name(p, get(p, e, "name"), what, a->name, sizeof a->name) ||
            get_name(p, get(p, e, "key"), what, a->key, sizeof a->key))
            return 1;
        for (int j = 0; j < s->n_axes - 1; j++)
            if (!strcmp(s->axes[j].name, a->name) || (s->axes[j].present && !strcmp(s->axes[j].key, a->key)))
                return perr(p, e, "%s: name '%s' / key '%s' is already an axis; use each once", what, a->name, a->key);
        if (!strcmp(a->name, "id") || !strcmp(a->name, "run_dir") || strpbrk(a->name, " \t"))
            return perr(p, e, "%s.name = '%s': reserved or holds a blank (index.tsv column); rename it", what, a->name);
        if (!strcmp(a->key, "run.out") || !strcmp(a->key, "run.name"))
            return perr(p, e, "%s.key = %s: vita sweep sets run.out and run.name itself", what, a->key);
        for (int j = 0; j < SWEEP_N_BUILTIN; j++)
            if (!strcmp(a->key, BUILTIN_KEY[j]))
                return perr(p, e, "%s.key = %s: use the %s axis for it", what, a->key, BUILTIN_NAME[j]);
        char w2[220];
        snprintf(w2, sizeof w2, "%s.values", what);
        if (parse_values(p, get(p, e, "values"), a, w2)) return 1;
    }
    return 0;
}

static int parse_primary(P* p, const yaml_node_t* n, Sweep* s) {
    static const char* const pk[] = {"layer", "feature", "estimator", NULL};
    if (!n) return perr(p, NULL, "primary: missing: declare the primary analysis before any run, e.g. "
                        "primary: {layer: norm, feature: pooled, estimator: mmd2_paired}");
    if (check_map(p, n, "primary") || only_keys(p, n, "primary", pk)) return 1;
    if (get_name(p, get(p, n, "layer"), "primary.layer", s->primary_layer, sizeof s->primary_layer) ||
        get_name(p, get(p, n, "feature"), "primary.feature", s->primary_feature, sizeof s->primary_feature) ||
        get_name(p, get(p, n, "estimator"), "primary.estimator", s->primary_estimator, sizeof s->primary_estimator))
        return 1;
    return 0;
}

static int parse(P* p, Sweep* s, const char* dir) {
    yaml_node_t* root = yaml_document_get_root_node(&p->doc);
    if (!root) return perr(p, NULL, "empty sweep file: see configs/examples/sweep-demo.yaml");
    static const char* const top[] = {"base", "name", "set", "axes", "task_set", "scratch", "controls",
                                      "primary", "n_runs", NULL};
    if (check_map(p, root, "the top level") || only_keys(p, root, "", top)) return 1;
    yaml_node_t* b = get(p, root, "base");
    const char* bs = scalar(b);
    if (!bs || !*bs || is_null(b))
        return perr(p, b, "base: missing: name the base run config (SPEC.md §7), relative to the sweep file");
    if (sweep_abs_path(dir, bs, s->base, sizeof s->base)) return perr(p, b, "base: path too long");
    if (access(s->base, R_OK))
        return perr(p, b, "base: %s (%s) cannot be read: %s; fix the path (relative to the sweep file)", bs,
                    s->base, strerror(errno));
    yaml_node_t* nm = get(p, root, "name");
    if (nm && get_name(p, nm, "name", s->name, sizeof s->name)) return 1;
    yaml_node_t* st = get(p, root, "set");
    if (st && !is_null(st) && parse_sets(p, st, "set", NULL, s)) return 1;
    yaml_node_t* ax = get(p, root, "axes");
    if (ax && !is_null(ax) && parse_axes(p, ax, s, dir)) return 1;
    for (int i = 0; i < s->n_set; i++)
        for (int a = 0; a < s->n_axes; a++)
            if (s->axes[a].present && !strcmp(s->set_keys[i], s->axes[a].key))
                return perr(p, st, "set.%s: the %s axis sets this key; remove one of them", s->set_keys[i],
                            s->axes[a].name);
    yaml_node_t* ts = get(p, root, "task_set");
    if (ts && !is_null(ts)) {
        if (check_map(p, ts, "task_set")) return 1;
        for (yaml_node_pair_t* q = ts->data.mapping.pairs.start; q < ts->data.mapping.pairs.top; q++) {
            const char* task = scalar(N(p, q->key));
            const SweepAxis* ta = &s->axes[SWEEP_AX_TASK];
            int found = !ta->present;   /* without a task axis the base config's task is checked later */
            for (int i = 0; i < ta->n; i++) found |= !strcmp(ta->labels[i], task);
            if (!found) return perr(p, N(p, q->key), "task_set.%s: not a value of axes.task; remove it or add the task", task);
            char what[100];
            snprintf(what, sizeof what, "task_set.%s", task);
            int first = s->n_task_set;
            if (parse_sets(p, N(p, q->value), what, task, s)) return 1;
            for (int i = first; i < s->n_task_set; i++)
                for (int a = 0; a < s->n_axes; a++)
                    if (s->axes[a].present && !strcmp(s->ts_key[i], s->axes[a].key))
                        return perr(p, N(p, q->value), "%s.%s: the %s axis sets this key (the runs along it would be "
                                    "identical); remove one of them", what, s->ts_key[i], s->axes[a].name);
        }
    }
    yaml_node_t* sc = get(p, root, "scratch");
    if (sc && get_name(p, sc, "scratch", s->scratch, sizeof s->scratch)) return 1;
    if (s->axes[SWEEP_AX_WEIGHTS].present) {
        if (!sc) return perr(p, NULL, "scratch: missing: name the baseline arm of axes.weights (the one with null weights)");
        int w = weights_label(s, s->scratch);
        if (w < 0) return perr(p, sc, "scratch: '%s' is not a label of axes.weights", s->scratch);
        if (strcmp(s->axes[SWEEP_AX_WEIGHTS].values[w], "null"))
            return perr(p, sc, "scratch: arm '%s' has weights; the baseline arm trains from scratch (null)", s->scratch);
    } else if (sc) {
        return perr(p, sc, "scratch: there is no axes.weights to name a baseline arm in; remove the key");
    }
    yaml_node_t* ct = get(p, root, "controls");
    if (ct && !is_null(ct) && parse_controls(p, ct, s)) return 1;
    if (parse_primary(p, get(p, root, "primary"), s)) return 1;
    yaml_node_t* nr = get(p, root, "n_runs");
    if (nr) {
        const char* v = scalar(nr);
        char* end;
        errno = 0;
        long k = v ? strtol(v, &end, 10) : -1;
        if (!v || *end || errno || k < 1) return perr(p, nr, "n_runs: expected a positive integer");
        if (k != sweep_n_runs(s))
            return perr(p, nr, "n_runs = %ld but the axes give %ld runs; remove n_runs or fix it", k, sweep_n_runs(s));
        s->n_runs_given = k;
    }
    return 0;
}

int sweep_load(Sweep* s, const char* path, char* err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->n_runs_given = -1;
    snprintf(s->file, sizeof s->file, "%s", path);
    s->n_axes = SWEEP_N_BUILTIN;
    s->axes = xcalloc(SWEEP_N_BUILTIN, sizeof(SweepAxis));
    for (int i = 0; i < SWEEP_N_BUILTIN; i++) {
        snprintf(s->axes[i].name, sizeof s->axes[i].name, "%s", BUILTIN_NAME[i]);
        snprintf(s->axes[i].key, sizeof s->axes[i].key, "%s", BUILTIN_KEY[i]);
    }
    /* the sweep file's directory, absolute: relative paths in the file are relative to it */
    char dir[SWEEP_PATH], tmp[SWEEP_PATH];
    snprintf(tmp, sizeof tmp, "%s", path);
    char* sl = strrchr(tmp, '/');
    if (sl) *(sl == tmp ? sl + 1 : sl) = 0;
    else snprintf(tmp, sizeof tmp, ".");
    if (!realpath(tmp, dir)) {
        snprintf(err, errlen, "%s: cannot resolve its directory: %s", path, strerror(errno));
        return 1;
    }
    const char* stem = sl ? sl + 1 - tmp + path : path;
    snprintf(s->name, sizeof s->name, "%.*s", (int)strcspn(stem, "."), stem);

    FILE* f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read sweep file %s: %s", path, strerror(errno));
        return 1;
    }
    yaml_parser_t yp;
    CHECK(yaml_parser_initialize(&yp), "libyaml init");
    yaml_parser_set_input_file(&yp, f);
    P p = {.file = path, .err = err, .errlen = errlen};
    int rc = 1;
    if (!yaml_parser_load(&yp, &p.doc)) {
        snprintf(err, errlen, "%s:%d: YAML syntax: %s", path, (int)yp.problem_mark.line + 1,
                 yp.problem ? yp.problem : "unknown");
        yaml_parser_delete(&yp);
        fclose(f);
        return 1;
    }
    rc = parse(&p, s, dir);
    yaml_document_delete(&p.doc);
    yaml_parser_delete(&yp);
    fclose(f);
    return rc;
}

static void strv_free(char** v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

void sweep_free(Sweep* s) {
    for (int a = 0; a < s->n_axes; a++) {
        strv_free(s->axes[a].labels, s->axes[a].n);
        strv_free(s->axes[a].values, s->axes[a].n);
    }
    free(s->axes);
    strv_free(s->set_keys, s->n_set);
    strv_free(s->set_vals, s->n_set);
    strv_free(s->ts_task, s->n_task_set);
    strv_free(s->ts_key, s->n_task_set);
    strv_free(s->ts_val, s->n_task_set);
    for (int i = 0; i < s->n_controls; i++) strv_free(s->controls[i].arms, s->controls[i].n_arms);
    free(s->controls);
    memset(s, 0, sizeof *s);
}

long sweep_n_runs(const Sweep* s) {
    long n = 1;
    for (int a = 0; a < s->n_axes; a++) {
        if (!s->axes[a].present) continue;
        if (n > LONG_MAX / s->axes[a].n) return 0;
        n *= s->axes[a].n;
    }
    return n;
}

void sweep_run_index(const Sweep* s, long r, int* idx) {
    for (int a = s->n_axes - 1; a >= 0; a--) {   /* the last axis counts fastest */
        if (!s->axes[a].present) { idx[a] = 0; continue; }
        idx[a] = (int)(r % s->axes[a].n);
        r /= s->axes[a].n;
    }
}

static void push_set(char*** v, int* n, const char* k, const char* val) {
    size_t len = strlen(k) + strlen(val) + 2;
    *v = realloc(*v, sizeof(char*) * (size_t)(*n + 1));
    CHECK(*v, "out of memory");
    char* s = xmalloc(len);
    snprintf(s, len, "%s=%s", k, val);
    (*v)[(*n)++] = s;
}

char** sweep_run_sets(const Sweep* s, long r, const char* base_task, const char* runs_dir, const char* id,
                      int* n) {
    char** v = NULL;
    *n = 0;
    int* idx = xcalloc((size_t)s->n_axes, sizeof(int));
    sweep_run_index(s, r, idx);
    for (int i = 0; i < s->n_set; i++) push_set(&v, n, s->set_keys[i], s->set_vals[i]);
    for (int a = 0; a < s->n_axes; a++)
        if (s->axes[a].present) push_set(&v, n, s->axes[a].key, s->axes[a].values[idx[a]]);
    const SweepAxis* ta = &s->axes[SWEEP_AX_TASK];
    const char* task = ta->present ? ta->labels[idx[SWEEP_AX_TASK]] : base_task;
    for (int i = 0; i < s->n_task_set; i++)
        if (!strcmp(s->ts_task[i], task)) push_set(&v, n, s->ts_key[i], s->ts_val[i]);
    char q[SWEEP_PATH + 8] = "\"";
    for (const char* c = runs_dir; *c && strlen(q) + 3 < sizeof q; c++) {
        if (*c == '"' || *c == '\\') strcat(q, "\\");
        strncat(q, c, 1);
    }
    strcat(q, "\"");
    push_set(&v, n, "run.out", q);
    char nm[64];
    snprintf(nm, sizeof nm, "\"%s\"", id);
    push_set(&v, n, "run.name", nm);
    free(idx);
    return v;
}

void sweep_sets_free(char** sets, int n) { strv_free(sets, n); }

int sweep_id_width(long n_runs) {
    int w = 4;
    for (long lim = 10000; n_runs > lim && w < 18; lim *= 10) w++;
    return w;
}

/* ---- the resolved sweep as YAML ------------------------------------------------------------ */
typedef struct { char* p; size_t n, cap; } B;
static void bput(B* b, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void bput(B* b, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    CHECK(k >= 0, "vsnprintf");
    if (b->n + (size_t)k + 1 > b->cap) {
        b->cap = (b->n + (size_t)k + 1) * 2;
        b->p = realloc(b->p, b->cap);
        CHECK(b->p, "out of memory");
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

/* a label as a YAML scalar (quoted: labels may look like numbers or null) */
static void bq(B* b, const char* s) {
    bput(b, "\"");
    for (; *s; s++) bput(b, "%s%c", *s == '"' || *s == '\\' ? "\\" : "", *s);
    bput(b, "\"");
}

char* sweep_to_yaml(const Sweep* s, long n_runs) {
    B b = {0};
    bput(&b, "# resolved by vita sweep (absolute paths, n_runs); vita sweep and vita report read it\n");
    bput(&b, "base: ");
    bq(&b, s->base);
    bput(&b, "\nname: ");
    bq(&b, s->name);
    bput(&b, "\nn_runs: %ld\n", n_runs);
    if (s->n_set) {
        bput(&b, "set:\n");
        for (int i = 0; i < s->n_set; i++) bput(&b, "  %s: %s\n", s->set_keys[i], s->set_vals[i]);
    }
    bput(&b, "axes:\n");
    for (int a = 0; a < SWEEP_N_BUILTIN; a++) {
        const SweepAxis* x = &s->axes[a];
        if (!x->present) continue;
        bput(&b, "  %s:", x->name);
        if (a == SWEEP_AX_WEIGHTS) {
            bput(&b, "\n");
            for (int i = 0; i < x->n; i++) {
                bput(&b, "    ");
                bq(&b, x->labels[i]);
                bput(&b, ": %s\n", x->values[i]);
            }
        } else {
            for (int i = 0; i < x->n; i++) bput(&b, "%s%s", i ? ", " : " [", x->values[i]);
            bput(&b, "]\n");
        }
    }
    if (s->n_axes > SWEEP_N_BUILTIN) {
        bput(&b, "  extra:\n");
        for (int a = SWEEP_N_BUILTIN; a < s->n_axes; a++) {
            const SweepAxis* x = &s->axes[a];
            bput(&b, "    - {name: ");
            bq(&b, x->name);
            bput(&b, ", key: %s, values: [", x->key);
            for (int i = 0; i < x->n; i++) bput(&b, "%s%s", i ? ", " : "", x->values[i]);
            bput(&b, "]}\n");
        }
    }
    if (s->n_task_set) {
        bput(&b, "task_set:\n");
        for (int i = 0; i < s->n_task_set; i++) {
            int first = 1;
            for (int j = 0; j < i; j++) first &= strcmp(s->ts_task[j], s->ts_task[i]) != 0;
            if (!first) continue;
            bput(&b, "  %s:\n", s->ts_task[i]);
            for (int j = i; j < s->n_task_set; j++)
                if (!strcmp(s->ts_task[j], s->ts_task[i])) bput(&b, "    %s: %s\n", s->ts_key[j], s->ts_val[j]);
        }
    }
    if (s->scratch[0]) {
        bput(&b, "scratch: ");
        bq(&b, s->scratch);
        bput(&b, "\n");
    }
    if (s->n_controls) {
        bput(&b, "controls:\n");
        for (int i = 0; i < s->n_controls; i++) {
            const SweepControl* c = &s->controls[i];
            bput(&b, "  - {kind: %s, ", c->kind);
            if (!strcmp(c->kind, "positive")) {
                bput(&b, "aligned: ");
                bq(&b, c->aligned);
                bput(&b, ", reference: ");
                bq(&b, c->reference);
            } else {
                bput(&b, "arms: [");
                for (int j = 0; j < c->n_arms; j++) {
                    if (j) bput(&b, ", ");
                    bq(&b, c->arms[j]);
                }
                bput(&b, "]");
            }
            bput(&b, "}\n");
        }
    }
    bput(&b, "primary: {layer: ");
    bq(&b, s->primary_layer);
    bput(&b, ", feature: %s, estimator: %s}\n", s->primary_feature, s->primary_estimator);
    return b.p;
}
