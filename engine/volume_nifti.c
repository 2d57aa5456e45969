/* engine/volume_nifti.c — NIfTI-1 / NIfTI-2 (.nii, .nii.gz) through nifticlib's nifti2 API
 * (it reads both versions). Orientation: the sform when sform_code > 0, else the qform when
 * qform_code > 0, else pixdim only (NIfTI "method 1", origin 0); the 4x4 maps (i,j,k) to RAS
 * mm, converted to vita's LPS by negating its x and y rows (volume.h). Voxel values get
 * scl_slope / scl_inter when slope is nonzero and finite. Data order in the file is x fastest,
 * then y, then z, then the 4th dimension: the same as Volume.data, component after component.
 * Written files: NIfTI-1 (libnifti2 2.1.0 writes NIfTI-2 single files with vox_offset 0,
 * i.e. broken, so vita writes version 1 only; it reads both), sform and qform both set (code 1, scanner
 * anatomical), units mm, uint8 (labels) or float32. NIfTI-1 stores srow_x/y/z and pixdim as
 * float32, so geometry written there round-trips to ~1e-7 relative; NIfTI-2 and MetaImage
 * keep doubles. */
#include "volume_internal.h"
#include "check.h"

#include <math.h>
#include <nifti2_io.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_int_type(int dt) {
    return dt == DT_UINT8 || dt == DT_INT8 || dt == DT_INT16 || dt == DT_UINT16 || dt == DT_INT32 ||
           dt == DT_UINT32 || dt == DT_INT64 || dt == DT_UINT64;
}

/* n voxels from element off of the raw array, scaled; 1 for unsupported types */
static int convert(const nifti_image* nim, size_t off, size_t n, float* out, double slope, double inter) {
    const void* p = nim->data;
    for (size_t k = 0; k < n; k++) {
        size_t q = off + k;
        double x;
        switch (nim->datatype) {
        case DT_UINT8: x = ((const uint8_t*)p)[q]; break;
        case DT_INT8: x = ((const int8_t*)p)[q]; break;
        case DT_INT16: x = ((const int16_t*)p)[q]; break;
        case DT_UINT16: x = ((const uint16_t*)p)[q]; break;
        case DT_INT32: x = ((const int32_t*)p)[q]; break;
        case DT_UINT32: x = ((const uint32_t*)p)[q]; break;
        case DT_INT64: x = (double)((const int64_t*)p)[q]; break;
        case DT_UINT64: x = (double)((const uint64_t*)p)[q]; break;
        case DT_FLOAT32: x = ((const float*)p)[q]; break;
        case DT_FLOAT64: x = ((const double*)p)[q]; break;
        default: return 1;
        }
        out[k] = (float)(slope * x + inter);
    }
    return 0;
}

int volume_nifti_read(const char* path, Volume* v, int component, char* err, size_t errlen) {
    memset(v, 0, sizeof *v);
    nifti_set_debug_level(0);   /* vita reports one line of its own */
    /* (is_nifti_file of libnifti2 2.1.0 answers -1 for valid NIfTI-2 files: not used) */
    int nver = 0;
    void* hdr = nifti_read_header(path, &nver, 1);
    if (!hdr)
        return vita_fail(err, errlen, "%s: not a NIfTI-1/2 file (header sizeof_hdr/magic/dim "
                         "invalid); is it truncated or another format?", path);
    free(hdr);
    nifti_image* nim = nifti_image_read(path, 1);
    if (!nim)
        return vita_fail(err, errlen, "%s: NIfTI data unreadable (datatype/vox_offset damaged, or "
                         "the file is truncated)", path);
    int rc = 0;
    int64_t ncomp = 1;
    for (int d = 4; d <= nim->dim[0] && d <= 7; d++) ncomp *= nim->dim[d] > 0 ? nim->dim[d] : 1;
    if (nim->dim[0] < 2 || nim->dim[1] < 1 || nim->dim[2] < 1 || nim->nx > INT32_MAX / 4 ||
        nim->ny > INT32_MAX / 4 || nim->nz > INT32_MAX / 4) {
        rc = vita_fail(err, errlen, "%s: dim = [%lld, %lld, %lld, %lld]: vita reads 2-D to 4-D images",
                       path, (long long)nim->dim[0], (long long)nim->dim[1], (long long)nim->dim[2],
                       (long long)nim->dim[3]);
        goto done;
    }
    if (component >= ncomp) {
        rc = vita_fail(err, errlen, "%s: component %d requested but dim[4..] holds %lld volume(s)",
                       path, component, (long long)ncomp);
        goto done;
    }
    if (!nim->data) {
        rc = vita_fail(err, errlen, "%s: NIfTI data could not be read (truncated file?)", path);
        goto done;
    }
    v->nx = (int)nim->nx;
    v->ny = (int)nim->ny;
    v->nz = nim->dim[0] >= 3 && nim->nz > 0 ? (int)nim->nz : 1;
    /* index -> RAS affine */
    double A[9], t[3];
    const nifti_dmat44* M = nim->sform_code > 0 ? &nim->sto_xyz : nim->qform_code > 0 ? &nim->qto_xyz : NULL;
    if (M) {
        for (int r = 0; r < 3; r++) {
            for (int c = 0; c < 3; c++) A[r * 3 + c] = M->m[r][c];
            t[r] = M->m[r][3];
        }
    } else {
        double px[3] = {fabs(nim->dx), fabs(nim->dy), fabs(nim->dz)};
        for (int k = 0; k < 9; k++) A[k] = 0;
        for (int a = 0; a < 3; a++) {
            A[a * 4] = px[a] > 0 ? px[a] : 1.0;
            t[a] = 0;
        }
    }
    /* RAS -> LPS: negate rows x and y */
    for (int c = 0; c < 3; c++) {
        A[c] = -A[c];
        A[3 + c] = -A[3 + c];
    }
    t[0] = -t[0];
    t[1] = -t[1];
    if (v->nz == 1 && A[2] == 0 && A[5] == 0 && A[8] == 0) A[8] = 1;   /* 2-D: unit z axis */
    if (vol_set_linear(v, A)) {
        rc = vita_fail(err, errlen, "%s: the %s maps an index axis to zero length; fix "
                       "pixdim / srow / quatern", path,
                       nim->sform_code > 0 ? "sform (srow_x/y/z)" : nim->qform_code > 0 ? "qform" : "pixdim");
        goto done;
    }
    memcpy(v->origin, t, sizeof t);
    double slope = nim->scl_slope, inter = nim->scl_inter;
    if (slope == 0 || !isfinite(slope) || !isfinite(inter)) {
        slope = 1;
        inter = 0;
    }
    v->is_integer = is_int_type(nim->datatype) && slope == 1 && inter == 0;
    size_t nvox = (size_t)v->nx * v->ny * v->nz;
    v->data = xmalloc(nvox * sizeof(float));
    if (convert(nim, nvox * (size_t)(component > 0 ? component : 0), nvox, v->data, slope, inter)) {
        rc = vita_fail(err, errlen, "%s: datatype %d (%s) is not supported; vita reads integer and "
                       "float32/64 voxels", path, nim->datatype, nifti_datatype_string(nim->datatype));
        free(v->data);
        v->data = NULL;
    }
done:
    nifti_image_free(nim);
    return rc;
}

int volume_nifti_write(const char* path, const Volume* const* comps, int ncomp, int as_labels,
                       char* err, size_t errlen) {
    const Volume* v = comps[0];
    const char* ext = vol_ends_with(path, ".nii.gz") ? ".nii.gz" : ".nii";
    char tmp[2048];
    vol_temp_name(path, ext, tmp, sizeof tmp);
    nifti_set_debug_level(0);
    int64_t dims[8] = {ncomp > 1 ? 4 : 3, v->nx, v->ny, v->nz, ncomp, 1, 1, 1};
    nifti_image* nim = nifti_make_new_nim(dims, as_labels ? DT_UINT8 : DT_FLOAT32, 1);
    if (!nim) return vita_fail(err, errlen, "%s: nifticlib could not allocate the image", path);
    size_t nvox = (size_t)v->nx * v->ny * v->nz;
    for (int c = 0; c < ncomp; c++) {
        const float* src = comps[c]->data;
        if (as_labels) {
            uint8_t* d = (uint8_t*)nim->data + nvox * c;
            for (size_t k = 0; k < nvox; k++) {
                float x = roundf(src[k]);
                d[k] = (uint8_t)(x < 0 || !(x == x) ? 0 : x > 255 ? 255 : x);
            }
        } else {
            memcpy((float*)nim->data + nvox * c, src, nvox * sizeof(float));
        }
    }
    /* LPS index->world, then RAS (negate x, y rows) */
    nifti_dmat44 R;
    memset(&R, 0, sizeof R);
    double sp[3] = {v->spacing[2], v->spacing[1], v->spacing[0]};
    for (int r = 0; r < 3; r++) {
        double sgn = r < 2 ? -1 : 1;
        for (int c = 0; c < 3; c++) R.m[r][c] = sgn * v->dir[r * 3 + c] * sp[c];
        R.m[r][3] = sgn * v->origin[r];
    }
    R.m[3][3] = 1;
    nim->sform_code = NIFTI_XFORM_SCANNER_ANAT;
    nim->sto_xyz = R;
    nim->sto_ijk = nifti_dmat44_inverse(R);
    nim->qform_code = NIFTI_XFORM_SCANNER_ANAT;
    double qdx, qdy, qdz;
    nifti_dmat44_to_quatern(R, &nim->quatern_b, &nim->quatern_c, &nim->quatern_d, &nim->qoffset_x,
                            &nim->qoffset_y, &nim->qoffset_z, &qdx, &qdy, &qdz, &nim->qfac);
    nim->qto_xyz = nifti_quatern_to_dmat44(nim->quatern_b, nim->quatern_c, nim->quatern_d,
                                           nim->qoffset_x, nim->qoffset_y, nim->qoffset_z, sp[0],
                                           sp[1], sp[2], nim->qfac);
    nim->qto_ijk = nifti_dmat44_inverse(nim->qto_xyz);
    nim->dx = nim->pixdim[1] = sp[0];
    nim->dy = nim->pixdim[2] = sp[1];
    nim->dz = nim->pixdim[3] = sp[2];
    nim->xyz_units = NIFTI_UNITS_MM;
    nim->scl_slope = 1;   /* values are stored as they are */
    nim->scl_inter = 0;
    snprintf(nim->descrip, sizeof nim->descrip, "vita");
    if (nifti_set_filenames(nim, tmp, 0, 1) != 0) {
        nifti_image_free(nim);
        return vita_fail(err, errlen, "%s: nifticlib rejected the file name", path);
    }
    nifti_set_iname_offset(nim, 1);
    unlink(tmp);
    nifti_image_write(nim);   /* returns void: success is checked on the file below */
    nifti_image_free(nim);
    struct stat st;
    int nver = 0;
    void* hdr = stat(tmp, &st) == 0 && st.st_size > 0 ? nifti_read_header(tmp, &nver, 1) : NULL;
    int ok = hdr != NULL;
    free(hdr);
    if (!ok) {
        unlink(tmp);
        return vita_fail(err, errlen, "%s: writing %s failed (directory not writable or disk full?)",
                         path, tmp);
    }
    return vol_commit(tmp, path, err, errlen);
}
