/* engine/atomic.h — durable, atomic file replacement: the new content goes to a temp file next
 * to the target, is flushed and fsync'ed, renamed over the target, and the directory is
 * fsync'ed (best effort; some file systems refuse fsync on directories). A reader sees the old
 * file or the new one, never a partial one; a crash leaves at most a stray temp file.
 *   AtomicFile   a stdio stream into "PATH.tmp.PID" (checkpoints, safetensors, small files)
 *   atomic_rename + atomic_fsync_file   for a temp file another library wrote and closed
 *                (HDF5: datasets, run logs, features) */
#ifndef VITA_ATOMIC_H
#define VITA_ATOMIC_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    FILE* fp;
    const char* path;          /* the target (not copied) */
    char* tmp;                 /* "PATH.tmp.PID" */
    int ok, e;                 /* ok: every write so far succeeded; e: errno of the first failure */
} AtomicFile;

/* creates the temp file; 0, or 1 with one line in err */
int atomic_open(AtomicFile* w, const char* path, char* err, size_t errlen);
/* appends n bytes (a failure is remembered and reported by atomic_commit) */
void atomic_write(AtomicFile* w, const void* p, size_t n);
/* fflush + fsync + close, rename over the target, fsync the directory; 0, or 1 with one line
 * in err and the temp file removed. Always releases w */
int atomic_commit(AtomicFile* w, char* err, size_t errlen);

/* the whole of data as path (an AtomicFile); 0, or 1 with one line in err */
int write_file_atomic(const char* path, const void* data, size_t bytes, char* err, size_t errlen);

/* fsync of the directory holding path; best effort */
void atomic_fsync_dir(const char* path);
/* fsync of a closed file by its name; 0, or the errno of open / fsync */
int atomic_fsync_file(const char* path);
/* rename tmp over path, then fsync the directory; 0, or the errno of the rename (tmp removed) */
int atomic_rename(const char* tmp, const char* path);

#endif
