/* engine/volume_mha.c — MetaImage (.mha: header and data in one file; .mhd: header + a data
 * file) reader and writer, zlib for CompressedData.
 *
 * Header: "Key = Value" lines (keys matched case-insensitively), ElementDataFile last; in a
 * .mha with LOCAL data the voxels start right after that line. Geometry: TransformMatrix
 * (aliases Rotation, Orientation) lists the direction of index axis 0 first, then axis 1, ...
 * (ITK's MetaImageIO sets Direction column i from values i*N .. i*N+N-1), so the values are
 * the columns of vita's dir one after another; Offset (aliases Position, Origin) is the LPS
 * position of voxel 0; ElementSpacing (else ElementSize) in x, y, z order. World is LPS, as in
 * ITK; AnatomicalOrientation is informational (ITK ignores it on read too) and is checked for
 * form only. Voxel order: x fastest, then y, z, then the 4th dimension (NDims 4) — or, with
 * ElementNumberOfChannels > 1, channels interleaved per voxel. `component` picks either.
 * Written: NDims 3 (4 for several components), MET_UCHAR (labels) or MET_FLOAT,
 * little-endian, CompressedData True for .mha (zlib stream) / False for .mhd (+ .raw). */
#include "volume_internal.h"
#include "check.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define MHA_MAX_HEADER (1 << 16)

typedef struct {
    const char* name;
    int size, is_float, is_signed;
} MetType;
static const MetType met_types[] = {
    {"MET_UCHAR", 1, 0, 0}, {"MET_CHAR", 1, 0, 1},   {"MET_USHORT", 2, 0, 0}, {"MET_SHORT", 2, 0, 1},
    {"MET_UINT", 4, 0, 0},  {"MET_INT", 4, 0, 1},    {"MET_ULONG", 4, 0, 0},  {"MET_LONG", 4, 0, 1},
    {"MET_ULONG_LONG", 8, 0, 0}, {"MET_LONG_LONG", 8, 0, 1},
    {"MET_FLOAT", 4, 1, 1}, {"MET_DOUBLE", 8, 1, 1},
};

typedef struct {
    int ndims, dims[4], nchan, msb, compressed, type;   /* type: index into met_types */
    long long header_size, compressed_size;
    double spacing[4], offset[4], matrix[16];
    int have_dims, have_type, have_matrix, have_spacing;
    char datafile[1024];
} MhaHeader;

static int parse_bool(const char* s, int* out) {
    if (!strcasecmp(s, "true") || !strcmp(s, "1")) *out = 1;
    else if (!strcasecmp(s, "false") || !strcmp(s, "0")) *out = 0;
    else return 1;
    return 0;
}

/* n numbers from s; returns how many were parsed (fewer = error for the caller) */
static int parse_nums(const char* s, double* out, int n) {
    int k = 0;
    while (k < n) {
        char* end;
        errno = 0;
        double x = strtod(s, &end);
        if (end == s || errno) break;
        out[k++] = x;
        s = end;
    }
    while (isspace((unsigned char)*s)) s++;
    return *s ? -1 : k;   /* trailing garbage */
}

/* reads the header from f; *data_start = file offset after ElementDataFile's line */
static int parse_header(FILE* f, const char* path, MhaHeader* h, long* data_start, char* err, size_t errlen) {
    memset(h, 0, sizeof *h);
    h->type = -1;
    h->header_size = 0;
    h->nchan = 1;
    for (int i = 0; i < 4; i++) h->spacing[i] = 1;
    char line[4096];
    int have_object = 0, have_binary = 0, binary = 1;
    long used = 0;
    while (fgets(line, sizeof line, f)) {
        used += (long)strlen(line);
        if (used > MHA_MAX_HEADER)
            return vita_fail(err, errlen, "%s: no ElementDataFile within the first %d bytes; not a "
                             "MetaImage header", path, MHA_MAX_HEADER);
        size_t L = strlen(line);
        if (L == sizeof line - 1 && line[L - 1] != '\n')
            return vita_fail(err, errlen, "%s: header line longer than %zu characters", path, sizeof line - 2);
        while (L && (line[L - 1] == '\n' || line[L - 1] == '\r' || isspace((unsigned char)line[L - 1]))) line[--L] = 0;
        if (!L) continue;
        char* eq = strchr(line, '=');
        if (!eq)
            return vita_fail(err, errlen, "%s: header line \"%.60s\" is not 'Key = Value'", path, line);
        char* k = line;
        char* val = eq + 1;
        *eq = 0;
        while (isspace((unsigned char)*k)) k++;
        for (char* e = eq - 1; e >= k && isspace((unsigned char)*e); e--) *e = 0;
        while (isspace((unsigned char)*val)) val++;
        double nums[16];
        if (!strcasecmp(k, "ObjectType")) {
            if (strcasecmp(val, "Image"))
                return vita_fail(err, errlen, "%s: ObjectType = %s; vita reads Image objects", path, val);
            have_object = 1;
        } else if (!strcasecmp(k, "NDims")) {
            if (parse_nums(val, nums, 1) != 1 || nums[0] < 2 || nums[0] > 4 || nums[0] != floor(nums[0]))
                return vita_fail(err, errlen, "%s: NDims = %s; vita reads 2, 3 or 4", path, val);
            h->ndims = (int)nums[0];
        } else if (!strcasecmp(k, "DimSize")) {
            int n = parse_nums(val, nums, 4);
            if (!h->ndims || n != h->ndims)
                return vita_fail(err, errlen, "%s: DimSize = %s needs NDims (given before it) positive integers",
                                 path, val);
            for (int i = 0; i < n; i++) {
                if (nums[i] < 1 || nums[i] > (1 << 24) || nums[i] != floor(nums[i]))
                    return vita_fail(err, errlen, "%s: DimSize = %s is not a list of positive integers", path, val);
                h->dims[i] = (int)nums[i];
            }
            h->have_dims = 1;
        } else if (!strcasecmp(k, "ElementSpacing") || (!strcasecmp(k, "ElementSize") && !h->have_spacing)) {
            /* ElementSize (voxel extent) stands in for the spacing only when no ElementSpacing */
            int n = parse_nums(val, nums, 4);
            if (!h->ndims || n != h->ndims)
                return vita_fail(err, errlen, "%s: %s = %s needs NDims (given before it) numbers", path, k, val);
            for (int i = 0; i < n; i++) h->spacing[i] = nums[i];
            if (!strcasecmp(k, "ElementSpacing")) h->have_spacing = 1;
        } else if (!strcasecmp(k, "Offset") || !strcasecmp(k, "Position") || !strcasecmp(k, "Origin")) {
            int n = parse_nums(val, nums, 4);
            if (!h->ndims || n != h->ndims)
                return vita_fail(err, errlen, "%s: %s = %s needs NDims (given before it) numbers", path, k, val);
            for (int i = 0; i < n; i++) h->offset[i] = nums[i];
        } else if (!strcasecmp(k, "TransformMatrix") || !strcasecmp(k, "Rotation") ||
                   !strcasecmp(k, "Orientation")) {
            int n = parse_nums(val, nums, 16);
            if (!h->ndims || n != h->ndims * h->ndims)
                return vita_fail(err, errlen, "%s: %s = %s needs NDims*NDims numbers (NDims before it)",
                                 path, k, val);
            memcpy(h->matrix, nums, sizeof(double) * n);
            h->have_matrix = 1;
        } else if (!strcasecmp(k, "AnatomicalOrientation")) {
            for (const char* c = val; *c; c++)
                if (!strchr("RLAPSI?", toupper((unsigned char)*c)))
                    return vita_fail(err, errlen, "%s: AnatomicalOrientation = %s; letters R L A P S I expected",
                                     path, val);
        } else if (!strcasecmp(k, "ElementType")) {
            for (size_t i = 0; i < sizeof met_types / sizeof *met_types; i++)
                if (!strcasecmp(val, met_types[i].name)) h->type = (int)i;
            if (h->type < 0)
                return vita_fail(err, errlen, "%s: ElementType = %s not supported; use MET_UCHAR, MET_CHAR, "
                                 "MET_SHORT, MET_USHORT, MET_INT, MET_UINT, MET_FLOAT or MET_DOUBLE", path, val);
            h->have_type = 1;
        } else if (!strcasecmp(k, "ElementNumberOfChannels")) {
            if (parse_nums(val, nums, 1) != 1 || nums[0] < 1 || nums[0] > 64 || nums[0] != floor(nums[0]))
                return vita_fail(err, errlen, "%s: ElementNumberOfChannels = %s; a positive integer expected", path, val);
            h->nchan = (int)nums[0];
        } else if (!strcasecmp(k, "BinaryDataByteOrderMSB") || !strcasecmp(k, "ElementByteOrderMSB")) {
            if (parse_bool(val, &h->msb))
                return vita_fail(err, errlen, "%s: %s = %s; True or False expected", path, k, val);
        } else if (!strcasecmp(k, "BinaryData")) {
            if (parse_bool(val, &binary))
                return vita_fail(err, errlen, "%s: BinaryData = %s; True or False expected", path, val);
            have_binary = 1;
        } else if (!strcasecmp(k, "CompressedData")) {
            if (parse_bool(val, &h->compressed))
                return vita_fail(err, errlen, "%s: CompressedData = %s; True or False expected", path, val);
        } else if (!strcasecmp(k, "CompressedDataSize")) {
            if (parse_nums(val, nums, 1) != 1 || nums[0] < 1)
                return vita_fail(err, errlen, "%s: CompressedDataSize = %s; a positive integer expected", path, val);
            h->compressed_size = (long long)nums[0];
        } else if (!strcasecmp(k, "HeaderSize")) {
            if (parse_nums(val, nums, 1) != 1 || nums[0] < -1)
                return vita_fail(err, errlen, "%s: HeaderSize = %s; an integer >= -1 expected", path, val);
            h->header_size = (long long)nums[0];
        } else if (!strcasecmp(k, "ElementDataFile")) {
            snprintf(h->datafile, sizeof h->datafile, "%s", val);
            *data_start = ftell(f);
            break;
        }   /* other keys (Comment, CenterOfRotation, ElementMin/Max, ...) carry no geometry */
    }
    if (!h->datafile[0])
        return vita_fail(err, errlen, "%s: no ElementDataFile line; not a MetaImage header (or truncated)", path);
    if (!have_object && !h->ndims)
        return vita_fail(err, errlen, "%s: no ObjectType / NDims; not a MetaImage header", path);
    if (!h->ndims) return vita_fail(err, errlen, "%s: NDims missing", path);
    if (!h->have_dims) return vita_fail(err, errlen, "%s: DimSize missing", path);
    if (!h->have_type) return vita_fail(err, errlen, "%s: ElementType missing", path);
    if (have_binary && !binary)
        return vita_fail(err, errlen, "%s: BinaryData = False (ASCII voxels) is not supported; "
                         "convert with ITK/SimpleITK to binary", path);
    if (!strcasecmp(h->datafile, "LIST") || strchr(h->datafile, '%'))
        return vita_fail(err, errlen, "%s: ElementDataFile = %s (slice lists / patterns) is not "
                         "supported; write one data file", path, h->datafile);
    return 0;
}

static int read_whole(FILE* f, long start, long long want, unsigned char** out, size_t* got) {
    if (fseek(f, 0, SEEK_END) != 0) return 1;
    long end = ftell(f);
    if (end < 0 || start > end) return 1;
    long long avail = end - start;
    if (want >= 0 && want < avail) avail = want;
    if (fseek(f, start, SEEK_SET) != 0) return 1;
    *out = xmalloc((size_t)avail);
    *got = fread(*out, 1, (size_t)avail, f);
    return *got != (size_t)avail;
}

int volume_mha_read(const char* path, Volume* v, int component, char* err, size_t errlen) {
    memset(v, 0, sizeof *v);
    FILE* f = fopen(path, "rb");
    if (!f) return vita_fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    MhaHeader h;
    long data_start = 0;
    unsigned char* raw = NULL;
    size_t raw_n = 0;
    FILE* df = NULL;
    char dpath[2200];
    int rc = parse_header(f, path, &h, &data_start, err, errlen);
    if (rc) goto done;
    int nd = h.ndims;
    int nz = nd >= 3 ? h.dims[2] : 1, nt = nd == 4 ? h.dims[3] : 1;
    int ncomp = nt * h.nchan;
    if (component >= ncomp) {
        rc = vita_fail(err, errlen, "%s: component %d requested but the file holds %d (DimSize / "
                       "ElementNumberOfChannels)", path, component, ncomp);
        goto done;
    }
    if (component < 0) component = 0;
    /* geometry: the spatial 3x3 of the NDims x NDims matrix; columns are stored one after another */
    double A[9] = {0};
    for (int c = 0; c < 3; c++)
        for (int r = 0; r < 3; r++) {
            double d = c < nd && r < nd ? (h.have_matrix ? h.matrix[c * nd + r] : (r == c)) : (r == c);
            A[r * 3 + c] = d * (c < nd ? h.spacing[c] : 1.0);
        }
    v->nx = h.dims[0];
    v->ny = h.dims[1];
    v->nz = nz;
    if (vol_set_linear(v, A)) {
        rc = vita_fail(err, errlen, "%s: ElementSpacing / TransformMatrix give an index axis zero "
                       "length; fix those fields", path);
        goto done;
    }
    for (int r = 0; r < 3; r++) v->origin[r] = r < nd ? h.offset[r] : 0;
    const MetType* T = &met_types[h.type];
    v->is_integer = !T->is_float;
    size_t nvox = (size_t)v->nx * v->ny * v->nz;
    size_t nbytes = nvox * (size_t)ncomp * T->size;
    /* the data bytes (possibly compressed) */
    if (!strcasecmp(h.datafile, "LOCAL")) {
        df = f;
    } else {
        const char* slash = strrchr(path, '/');
        if (h.datafile[0] == '/' || !slash) snprintf(dpath, sizeof dpath, "%s", h.datafile);
        else snprintf(dpath, sizeof dpath, "%.*s/%s", (int)(slash - path), path, h.datafile);
        df = fopen(dpath, "rb");
        if (!df) {
            rc = vita_fail(err, errlen, "%s: ElementDataFile %s: cannot open: %s", path, dpath, strerror(errno));
            goto done;
        }
        data_start = 0;
        if (h.header_size > 0) data_start = (long)h.header_size;
        if (h.header_size == -1 && !h.compressed) {
            if (fseek(df, 0, SEEK_END) != 0) { rc = vita_fail(err, errlen, "%s: cannot seek %s", path, dpath); goto done; }
            data_start = ftell(df) - (long)nbytes;
            if (data_start < 0) data_start = 0;
        }
    }
    const char* where = df == f ? path : dpath;
    if (h.compressed) {
        unsigned char* z = NULL;
        size_t zn = 0;
        if (read_whole(df, data_start, h.compressed_size > 0 ? h.compressed_size : -1, &z, &zn)) {
            free(z);
            rc = vita_fail(err, errlen, "%s: compressed data shorter than CompressedDataSize (truncated file?)", where);
            goto done;
        }
        raw = xmalloc(nbytes);
        z_stream s;
        memset(&s, 0, sizeof s);
        int zr = inflateInit2(&s, 15 + 32);   /* zlib or gzip stream, detected from its header */
        CHECK(zr == Z_OK, "inflateInit2: %d", zr);
        s.next_in = z;
        s.avail_in = (uInt)zn;
        s.next_out = raw;
        s.avail_out = (uInt)nbytes;
        zr = inflate(&s, Z_FINISH);
        size_t out_n = nbytes - s.avail_out;
        inflateEnd(&s);
        free(z);
        if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR && zr != Z_OK) || out_n != nbytes) {
            rc = vita_fail(err, errlen, "%s: CompressedData: zlib stream damaged or too short "
                           "(%zu of %zu bytes decoded; DimSize/ElementType inconsistent?)", where, out_n, nbytes);
            goto done;
        }
        raw_n = nbytes;
    } else {
        if (read_whole(df, data_start, (long long)nbytes, &raw, &raw_n) || raw_n != nbytes) {
            rc = vita_fail(err, errlen, "%s: data holds %zu bytes but DimSize x ElementType need %zu "
                           "(truncated file?)", where, raw_n, nbytes);
            goto done;
        }
    }
    /* component c: 4-D slab c / nchan, channel c % nchan */
    int slab = component / h.nchan, ch = component % h.nchan;
    v->data = xmalloc(nvox * sizeof(float));
    int swap = h.msb;   /* vita runs on little-endian hosts (x86-64, aarch64) */
    for (size_t k = 0; k < nvox; k++) {
        size_t e = ((size_t)slab * nvox + k) * h.nchan + ch;
        unsigned char b[8];
        memcpy(b, raw + e * T->size, T->size);
        if (swap)
            for (int i = 0; i < T->size / 2; i++) {
                unsigned char t = b[i];
                b[i] = b[T->size - 1 - i];
                b[T->size - 1 - i] = t;
            }
        double x;
        switch (T->size * 4 + T->is_float * 2 + T->is_signed) {
        case 4: x = b[0]; break;
        case 5: x = (int8_t)b[0]; break;
        case 8: { uint16_t u; memcpy(&u, b, 2); x = u; } break;
        case 9: { int16_t u; memcpy(&u, b, 2); x = u; } break;
        case 16: { uint32_t u; memcpy(&u, b, 4); x = u; } break;
        case 17: { int32_t u; memcpy(&u, b, 4); x = u; } break;
        case 19: { float u; memcpy(&u, b, 4); x = u; } break;
        case 32: { uint64_t u; memcpy(&u, b, 8); x = (double)u; } break;
        case 33: { int64_t u; memcpy(&u, b, 8); x = (double)u; } break;
        default: { double u; memcpy(&u, b, 8); x = u; } break;
        }
        v->data[k] = (float)x;
    }
done:
    free(raw);
    if (df && df != f) fclose(df);
    fclose(f);
    if (rc) volume_free(v);
    return rc;
}

/* AnatomicalOrientation as ITK writes it: per index axis the letter the axis runs FROM (an
 * axis along +L runs from R: identity LPS direction = "RAI") */
static void orientation_letters(const Volume* v, char out[4]) {
    static const char from_pos[3] = {'R', 'A', 'I'}, from_neg[3] = {'L', 'P', 'S'};
    for (int c = 0; c < 3; c++) {
        int best = 0;
        for (int r = 1; r < 3; r++)
            if (fabs(v->dir[r * 3 + c]) > fabs(v->dir[best * 3 + c])) best = r;
        out[c] = v->dir[best * 3 + c] >= 0 ? from_pos[best] : from_neg[best];
    }
    out[3] = 0;
}

/* file = a then b (either may be empty), written to a temp name with extension ext next to
 * `file` and committed (fsync + rename); errors name `path` (the image being written) */
static int write_atomic(const char* path, const char* file, const char* ext, const void* a, size_t an,
                        const void* b, size_t bn, char* err, size_t errlen) {
    char tmp[2100];
    vol_temp_name(file, ext, tmp, sizeof tmp);
    FILE* f = fopen(tmp, "wb");
    if (!f) return vita_fail(err, errlen, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    int e = an && fwrite(a, 1, an, f) != an;
    e |= bn && fwrite(b, 1, bn, f) != bn;
    e |= fclose(f) != 0;
    if (e) {
        unlink(tmp);
        return vita_fail(err, errlen, "%s: writing %s failed (disk full?)", path, tmp);
    }
    return vol_commit(tmp, file, err, errlen);
}

int volume_mha_write(const char* path, const Volume* const* comps, int ncomp, int as_labels,
                     int compress, char* err, size_t errlen) {
    const Volume* v = comps[0];
    int local = vol_ends_with(path, ".mha");
    size_t nvox = (size_t)v->nx * v->ny * v->nz, esz = as_labels ? 1 : 4;
    size_t nbytes = nvox * ncomp * esz;
    unsigned char* buf = xmalloc(nbytes);
    for (int c = 0; c < ncomp; c++) {
        const float* src = comps[c]->data;
        if (as_labels) {
            for (size_t k = 0; k < nvox; k++) {
                float x = roundf(src[k]);
                buf[c * nvox + k] = (unsigned char)(x < 0 || !(x == x) ? 0 : x > 255 ? 255 : x);
            }
        } else {
            memcpy(buf + c * nvox * 4, src, nvox * 4);
        }
    }
    unsigned char* out = buf;
    size_t out_n = nbytes;
    if (compress) {
        uLongf zn = compressBound((uLong)nbytes);
        out = xmalloc(zn);
        int zr = compress2(out, &zn, buf, (uLong)nbytes, 6);
        CHECK(zr == Z_OK, "compress2: %d", zr);
        out_n = zn;
    }
    /* header */
    int nd = ncomp > 1 ? 4 : 3;
    char hdr[4096];
    int p = 0;
    p += snprintf(hdr + p, sizeof hdr - p, "ObjectType = Image\nNDims = %d\nBinaryData = True\n"
                  "BinaryDataByteOrderMSB = False\nCompressedData = %s\n", nd, compress ? "True" : "False");
    if (compress) p += snprintf(hdr + p, sizeof hdr - p, "CompressedDataSize = %zu\n", out_n);
    p += snprintf(hdr + p, sizeof hdr - p, "TransformMatrix =");
    for (int c = 0; c < nd; c++)
        for (int r = 0; r < nd; r++)
            p += snprintf(hdr + p, sizeof hdr - p, " %.17g", c < 3 && r < 3 ? v->dir[r * 3 + c] : (double)(r == c));
    p += snprintf(hdr + p, sizeof hdr - p, "\nOffset = %.17g %.17g %.17g%s\n", v->origin[0], v->origin[1],
                  v->origin[2], nd == 4 ? " 0" : "");
    p += snprintf(hdr + p, sizeof hdr - p, "CenterOfRotation = 0 0 0%s\n", nd == 4 ? " 0" : "");
    char orient[4];
    orientation_letters(v, orient);
    p += snprintf(hdr + p, sizeof hdr - p, "AnatomicalOrientation = %s%s\n", orient, nd == 4 ? "?" : "");
    p += snprintf(hdr + p, sizeof hdr - p, "ElementSpacing = %.17g %.17g %.17g%s\n", v->spacing[2],
                  v->spacing[1], v->spacing[0], nd == 4 ? " 1" : "");
    p += snprintf(hdr + p, sizeof hdr - p, "DimSize = %d %d %d", v->nx, v->ny, v->nz);
    if (nd == 4) p += snprintf(hdr + p, sizeof hdr - p, " %d", ncomp);
    p += snprintf(hdr + p, sizeof hdr - p, "\nElementType = %s\n", as_labels ? "MET_UCHAR" : "MET_FLOAT");
    /* data file name for .mhd: <base>.raw / .zraw next to the header */
    char dname[2048] = "LOCAL", dpath[2048] = "";
    if (!local) {
        const char* slash = strrchr(path, '/');
        const char* base = slash ? slash + 1 : path;
        snprintf(dname, sizeof dname, "%.*s.%s", (int)strlen(base) - 4, base, compress ? "zraw" : "raw");
        snprintf(dpath, sizeof dpath, "%.*s%s", (int)(base - path), path, dname);
    }
    p += snprintf(hdr + p, sizeof hdr - p, "ElementDataFile = %s\n", dname);
    CHECK(p < (int)sizeof hdr, "MetaImage header overflow");
    int rc = 0;
    if (!local) rc = write_atomic(path, dpath, compress ? ".zraw" : ".raw", NULL, 0, out, out_n, err, errlen);
    if (!rc)
        rc = write_atomic(path, path, local ? ".mha" : ".mhd", hdr, (size_t)p, local ? out : NULL,
                          local ? out_n : 0, err, errlen);
    if (out != buf) free(out);
    free(buf);
    return rc;
}
