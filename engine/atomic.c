/* engine/atomic.c — durable, atomic file replacement (atomic.h). */
#include "atomic.h"
#include "errfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void atomic_fsync_dir(const char* path) {
    size_t n = strlen(path) + 1;
    char* dir = malloc(n);
    if (!dir) return;
    memcpy(dir, path, n);
    char* slash = strrchr(dir, '/');
    const char* d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
    int fd = open(d, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

int atomic_fsync_file(const char* path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return errno;
    int e = fsync(fd) != 0 ? errno : 0;
    close(fd);
    return e;
}

int atomic_rename(const char* tmp, const char* path) {
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return e ? e : EIO;
    }
    atomic_fsync_dir(path);
    return 0;
}

int atomic_open(AtomicFile* w, const char* path, char* err, size_t errlen) {
    memset(w, 0, sizeof *w);
    w->path = path;
    size_t tl = strlen(path) + 32;
    w->tmp = malloc(tl);
    if (!w->tmp) { vita_fail_line(err, errlen, "%s: out of host memory", path); return 1; }
    snprintf(w->tmp, tl, "%s.tmp.%ld", path, (long)getpid());
    w->fp = fopen(w->tmp, "wb");
    if (!w->fp) {
        vita_fail_line(err, errlen, "%s: cannot create temporary file %s: %s (does the directory exist "
                       "and is it writable?)", path, w->tmp, strerror(errno));
        free(w->tmp);
        w->tmp = NULL;
        return 1;
    }
    w->ok = 1;
    return 0;
}

void atomic_write(AtomicFile* w, const void* p, size_t n) {
    if (!w->ok || !n) return;
    if (fwrite(p, 1, n, w->fp) != n) { w->ok = 0; w->e = errno; }
}

int atomic_commit(AtomicFile* w, char* err, size_t errlen) {
    int ok = w->ok && fflush(w->fp) == 0 && fsync(fileno(w->fp)) == 0;
    int e = ok ? 0 : (w->e ? w->e : errno);
    if (fclose(w->fp) != 0 && ok) { ok = 0; e = errno; }
    w->fp = NULL;
    int rc = 1;
    if (!ok) {
        vita_fail_line(err, errlen, "%s: writing %s failed: %s (disk full or quota exceeded?)", w->path,
                       w->tmp, strerror(e));
        remove(w->tmp);
    } else if (rename(w->tmp, w->path) != 0) {
        vita_fail_line(err, errlen, "%s: cannot rename %s over it: %s", w->path, w->tmp, strerror(errno));
        remove(w->tmp);
    } else {
        atomic_fsync_dir(w->path);
        rc = 0;
    }
    free(w->tmp);
    w->tmp = NULL;
    return rc;
}

int write_file_atomic(const char* path, const void* data, size_t bytes, char* err, size_t errlen) {
    AtomicFile w;
    if (atomic_open(&w, path, err, errlen)) return 1;
    atomic_write(&w, data, bytes);
    return atomic_commit(&w, err, errlen);
}
