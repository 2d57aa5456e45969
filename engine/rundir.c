/* engine/rundir.c — run-directory state: started / finished (see rundir.h). */
#include "rundir.h"
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int rundir_started(const char* dir) {
    DIR* d = opendir(dir);
    if (!d) return 0;   /* missing (or unreadable: the mkdir that follows says why) */
    struct dirent* e;
    int any = 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "config.yaml")) {
            any = 1;
            break;
        }
    closedir(d);
    return any;
}

int rundir_done(const char* dir) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, RUNDIR_DONE);
    return access(p, F_OK) == 0;
}

int rundir_mark_done(const char* dir, long steps, char* err, size_t errlen) {
    char p[1200], text[160], when[40] = "unknown";
    snprintf(p, sizeof p, "%s/%s", dir, RUNDIR_DONE);
    time_t now = time(NULL);
    struct tm tm;
    if (now != (time_t)-1 && gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n = snprintf(text, sizeof text, "vita-run-done 1\nfinished %s\nsteps %ld\n", when, steps);
    return write_file_atomic(p, text, (size_t)n, err, errlen);
}

int rundir_clear_done(const char* dir, char* err, size_t errlen) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, RUNDIR_DONE);
    if (unlink(p) && errno != ENOENT) {
        snprintf(err, errlen, "%s: cannot remove: %s", p, strerror(errno));
        return 1;
    }
    return 0;
}
