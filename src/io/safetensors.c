/* safetensors reader and writer (https://github.com/huggingface/safetensors, format spec).
 *
 * Layout: u64 little-endian N, N bytes of UTF-8 JSON, then the data section. The JSON maps
 * each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} with offsets
 * relative to the start of the data section, plus an optional "__metadata__" object of
 * string pairs. vpd_st_open validates the whole header once (so a corrupt file is
 * rejected before any tensor is trusted); vpd_st_read streams one tensor through a
 * small conversion buffer, so a large embedding is never held twice. All byte decoding
 * is done explicitly little-endian, so the code is independent of the host order. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "vpd/io.h"

/* The reference implementation refuses headers above 100 MB; so do we (a corrupt length
 * field would otherwise make us allocate whatever garbage says). */
#define ST_MAX_HEADER (100u * 1000u * 1000u)
#define ST_CHUNK_BYTES (1u << 20)

static int dtype_size(const char *dt) {
    static const struct { const char *name; int size; } tab[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
        {"I8", 1},  {"U64", 8}, {"U32", 4}, {"U16", 2},  {"U8", 1},  {"BOOL", 1},
        {"F8_E4M3", 1}, {"F8_E5M2", 1}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(tab[i].name, dt) == 0) return tab[i].size;
    return 0;
}

static bool dtype_is_float(const char *dt) {
    return !strcmp(dt, "F32") || !strcmp(dt, "F64") || !strcmp(dt, "F16") || !strcmp(dt, "BF16");
}

static uint64_t le64(const unsigned char *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

static float f16_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15), e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v;
    if (e == 0) v = ldexp((double)m, -24);                       /* subnormal */
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexp((double)(m | 0x400), (int)e - 25);
    return (float)(sign ? -v : v);
}

static float bits_to_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- open / close ------------------------------------------------------------------ */

static void st_free(vpd_safetensors *st) {
    if (st->fp) fclose((FILE *)st->fp);
    free(st->entries);
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_vals[i]);
    }
    free(st->meta_keys);
    free(st->meta_vals);
    char path[sizeof st->path];
    memcpy(path, st->path, sizeof path);
    memset(st, 0, sizeof *st);
    memcpy(st->path, path, sizeof path); /* keep the name for messages after close */
}

void vpd_st_close(vpd_safetensors *st) { st_free(st); }

/* Parse a JSON array of non-negative integers (exact in a double up to 2^53). */
static bool json_u64_array(const cJSON *a, uint64_t *out, int maxn, int *n) {
    if (!cJSON_IsArray(a)) return false;
    int k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        if (k >= maxn || !cJSON_IsNumber(it)) return false;
        double d = it->valuedouble;
        if (d < 0 || d > 9007199254740992.0 || d != floor(d)) return false;
        out[k++] = (uint64_t)d;
    }
    *n = k;
    return true;
}

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp((*(const vpd_st_entry *const *)a)->name, (*(const vpd_st_entry *const *)b)->name);
}

static int cmp_entry_begin(const void *a, const void *b) {
    const vpd_st_entry *x = *(const vpd_st_entry *const *)a, *y = *(const vpd_st_entry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : x->end < y->end ? -1 : x->end > y->end ? 1 : 0;
}

/* Every tensor name once, and no two tensors sharing bytes (a write through one would be
 * read back through the other; the reference implementation refuses both). */
static vpd_status check_layout(vpd_safetensors *st) {
    if (st->n < 2) return VPD_OK;
    vpd_st_entry **p = malloc((size_t)st->n * sizeof *p);
    if (!p) return vpd_error(VPD_ERR_MEM, "%s: out of memory checking the header", st->path);
    for (int i = 0; i < st->n; i++) p[i] = &st->entries[i];
    vpd_status s = VPD_OK;
    qsort(p, (size_t)st->n, sizeof *p, cmp_entry_name);
    for (int i = 1; i < st->n && s == VPD_OK; i++)
        if (!strcmp(p[i - 1]->name, p[i]->name))
            s = vpd_error(VPD_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", st->path, p[i]->name);
    if (s == VPD_OK) {
        qsort(p, (size_t)st->n, sizeof *p, cmp_entry_begin);
        const vpd_st_entry *last = NULL; /* the non-empty tensor reaching furthest so far */
        for (int i = 0; i < st->n && s == VPD_OK; i++) {
            const vpd_st_entry *e = p[i];
            if (e->end == e->begin) continue; /* empty tensors occupy no bytes */
            if (last && e->begin < last->end)
                s = vpd_error(VPD_ERR_FORMAT,
                              "%s: tensors '%s' (data_offsets [%llu, %llu]) and '%s' (data_offsets [%llu, %llu]) "
                              "overlap; each tensor needs its own bytes (corrupt or hand-made header)",
                              st->path, last->name, (unsigned long long)(last->begin - st->data_start),
                              (unsigned long long)(last->end - st->data_start), e->name,
                              (unsigned long long)(e->begin - st->data_start),
                              (unsigned long long)(e->end - st->data_start));
            if (!last || e->end > last->end) last = e;
        }
    }
    free(p);
    return s;
}

static vpd_status parse_header(vpd_safetensors *st, const char *json, uint64_t data_size) {
    const char *path = st->path;
    const char *end_ptr = NULL;
    cJSON *root = cJSON_ParseWithOpts(json, &end_ptr, 0);
    if (!root) {
        size_t off = end_ptr ? (size_t)(end_ptr - json) : 0;
        return vpd_error(VPD_ERR_FORMAT, "%s: header is not valid JSON (parse error near byte %zu of the header)",
                         path, off);
    }
    vpd_status s = VPD_OK;
    if (!cJSON_IsObject(root)) {
        s = vpd_error(VPD_ERR_FORMAT, "%s: header JSON is not an object", path);
        goto done;
    }
    int count = cJSON_GetArraySize(root);
    st->entries = calloc((size_t)(count ? count : 1), sizeof *st->entries);
    if (!st->entries) {
        s = vpd_error(VPD_ERR_MEM, "%s: out of memory for %d header entries", path, count);
        goto done;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (!strcmp(it->string, "__metadata__")) {
            if (st->meta_keys) { /* a second one would be appended past the first's arrays */
                s = vpd_error(VPD_ERR_FORMAT, "%s: header has \"__metadata__\" twice", path);
                goto done;
            }
            if (!cJSON_IsObject(it)) {
                s = vpd_error(VPD_ERR_FORMAT, "%s: \"__metadata__\" is not an object", path);
                goto done;
            }
            int nm = cJSON_GetArraySize(it);
            st->meta_keys = calloc((size_t)nm + 1, sizeof(char *));
            st->meta_vals = calloc((size_t)nm + 1, sizeof(char *));
            if (!st->meta_keys || !st->meta_vals) {
                s = vpd_error(VPD_ERR_MEM, "%s: out of memory for metadata", path);
                goto done;
            }
            const cJSON *kv;
            cJSON_ArrayForEach(kv, it) {
                if (!cJSON_IsString(kv)) {
                    s = vpd_error(VPD_ERR_FORMAT, "%s: metadata value of \"%s\" is not a string", path, kv->string);
                    goto done;
                }
                if (st->n_meta >= nm) {
                    s = vpd_error(VPD_ERR_INTERNAL, "%s: metadata count changed while reading", path);
                    goto done;
                }
                st->meta_keys[st->n_meta] = strdup(kv->string);
                st->meta_vals[st->n_meta] = strdup(kv->valuestring);
                st->n_meta++;
                if (!st->meta_keys[st->n_meta - 1] || !st->meta_vals[st->n_meta - 1]) {
                    s = vpd_error(VPD_ERR_MEM, "%s: out of memory for metadata", path);
                    goto done;
                }
            }
            continue;
        }
        if (st->n >= count) {
            s = vpd_error(VPD_ERR_INTERNAL, "%s: header entry count changed while reading", path);
            goto done;
        }
        vpd_st_entry *e = &st->entries[st->n];
        if (strlen(it->string) >= sizeof e->name) {
            s = vpd_error(VPD_ERR_FORMAT, "%s: tensor name '%.60s...' longer than %zu characters", path, it->string,
                          sizeof e->name - 1);
            goto done;
        }
        strcpy(e->name, it->string);
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
        const cJSON *of = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsObject(it) || !cJSON_IsString(dt) || !sh || !of) {
            s = vpd_error(VPD_ERR_FORMAT, "%s: tensor '%s': header entry needs \"dtype\", \"shape\" and \"data_offsets\"",
                          path, e->name);
            goto done;
        }
        int esize = dtype_size(dt->valuestring);
        if (!esize || strlen(dt->valuestring) >= sizeof e->dtype) {
            s = vpd_error(VPD_ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%s\"", path, e->name, dt->valuestring);
            goto done;
        }
        strcpy(e->dtype, dt->valuestring);
        uint64_t shp[VPD_ST_MAX_DIMS], offs[2];
        int nd = 0, no = 0;
        if (!json_u64_array(sh, shp, VPD_ST_MAX_DIMS, &nd)) {
            s = vpd_error(VPD_ERR_FORMAT, "%s: tensor '%s': \"shape\" must be a list of at most %d non-negative integers",
                          path, e->name, VPD_ST_MAX_DIMS);
            goto done;
        }
        if (!json_u64_array(of, offs, 2, &no) || no != 2 || offs[0] > offs[1]) {
            s = vpd_error(VPD_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be [begin, end] with begin <= end",
                          path, e->name);
            goto done;
        }
        uint64_t numel = 1;
        e->ndim = nd;
        for (int d = 0; d < nd; d++) {
            e->shape[d] = (int64_t)shp[d];
            if (shp[d] && numel > UINT64_MAX / 16 / shp[d]) {
                s = vpd_error(VPD_ERR_FORMAT, "%s: tensor '%s': shape too large", path, e->name);
                goto done;
            }
            numel *= shp[d];
        }
        if (offs[1] > data_size) {
            s = vpd_error(VPD_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu] extend beyond the data section (%llu bytes; "
                          "file truncated?)",
                          path, e->name, (unsigned long long)offs[0], (unsigned long long)offs[1],
                          (unsigned long long)data_size);
            goto done;
        }
        if (offs[1] - offs[0] != numel * (uint64_t)esize) {
            char b[128];
            s = vpd_error(VPD_ERR_FORMAT, "%s: tensor '%s': data_offsets span %llu bytes but %s %s needs %llu", path,
                          e->name, (unsigned long long)(offs[1] - offs[0]), e->dtype,
                          vpd_shape_str(b, sizeof b, nd, e->shape), (unsigned long long)(numel * (uint64_t)esize));
            goto done;
        }
        e->begin = st->data_start + offs[0];
        e->end = st->data_start + offs[1];
        st->n++;
    }
    if (s == VPD_OK) s = check_layout(st);
done:
    cJSON_Delete(root);
    return s;
}

vpd_status vpd_st_open(vpd_safetensors *st, const char *path) {
    memset(st, 0, sizeof *st);
    snprintf(st->path, sizeof st->path, "%s", path);
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return vpd_error(VPD_ERR_IO, "cannot open safetensors file '%s': is a directory", path);
    FILE *fp = fopen(path, "rb");
    if (!fp) return vpd_error(VPD_ERR_IO, "cannot open safetensors file '%s': %s", path, strerror(errno));
    st->fp = fp;
    vpd_status s = VPD_OK;
    char *json = NULL;
    if (fseeko(fp, 0, SEEK_END) != 0) {
        s = vpd_error(VPD_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
        goto fail;
    }
    off_t fsz = ftello(fp);
    rewind(fp);
    st->file_size = fsz < 0 ? 0 : (uint64_t)fsz;
    unsigned char lenb[8];
    if (st->file_size < 8 || fread(lenb, 1, 8, fp) != 8) {
        s = vpd_error(VPD_ERR_FORMAT, "%s: truncated header: file has %llu bytes, a safetensors file starts with an "
                      "8-byte header length", path, (unsigned long long)st->file_size);
        goto fail;
    }
    uint64_t hlen = le64(lenb);
    if (hlen > ST_MAX_HEADER || hlen > st->file_size - 8) {
        s = vpd_error(VPD_ERR_FORMAT, "%s: truncated header: header length field says %llu bytes but the file has %llu "
                      "bytes after it (not a safetensors file, or cut short)",
                      path, (unsigned long long)hlen, (unsigned long long)(st->file_size - 8));
        goto fail;
    }
    json = malloc(hlen + 1);
    if (!json) {
        s = vpd_error(VPD_ERR_MEM, "%s: out of memory for a %llu-byte header", path, (unsigned long long)hlen);
        goto fail;
    }
    if (fread(json, 1, hlen, fp) != hlen) {
        s = vpd_error(VPD_ERR_IO, "%s: truncated header: could not read %llu header bytes", path,
                      (unsigned long long)hlen);
        goto fail;
    }
    json[hlen] = '\0';
    if (strlen(json) != hlen) {
        /* NUL bytes inside the header: the JSON parser would silently stop there */
        s = vpd_error(VPD_ERR_FORMAT, "%s: header is not valid JSON (NUL byte at header offset %zu)", path,
                      strlen(json));
        goto fail;
    }
    st->data_start = 8 + hlen;
    s = parse_header(st, json, st->file_size - st->data_start);
    if (s != VPD_OK) goto fail;
    free(json);
    return VPD_OK;
fail:
    free(json);
    st_free(st);
    return s;
}

int vpd_st_find(const vpd_safetensors *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (!strcmp(st->entries[i].name, name)) return i;
    return -1;
}

const char *vpd_st_metadata(const vpd_safetensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta_keys[i], key)) return st->meta_vals[i];
    return NULL;
}

/* "tensor 'x' not found" lists the names closest to the wanted one (longest common prefix),
 * which is usually the prefix mismatch ("transformer.h.0..." vs "h.0...") the user needs. */
static vpd_status not_found(const vpd_safetensors *st, const char *name) {
    char list[700] = "";
    size_t off = 0;
    int picked[5], np = 0;
    for (int k = 0; k < 5 && k < st->n; k++) {
        int best = -1, bestlen = -1;
        for (int i = 0; i < st->n; i++) {
            bool taken = false;
            for (int j = 0; j < np; j++) taken |= picked[j] == i;
            if (taken) continue;
            int l = 0;
            while (name[l] && name[l] == st->entries[i].name[l]) l++;
            if (l > bestlen) { bestlen = l; best = i; }
        }
        if (best < 0) break;
        picked[np++] = best;
    }
    for (int j = 0; j < np && off < sizeof list; j++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s'%s'", j ? ", " : "", st->entries[picked[j]].name);
    return vpd_error(VPD_ERR_FORMAT, "%s: tensor '%s' not found (file has %d tensor%s%s%s%s)", st->path, name, st->n,
                     st->n == 1 ? "" : "s", np ? "; closest: " : "", list, st->n > np ? ", ..." : "");
}

static vpd_status read_entry(vpd_safetensors *st, const vpd_st_entry *e, real *out) {
    FILE *fp = (FILE *)st->fp;
    if (!fp) return vpd_error(VPD_ERR_INTERNAL, "%s: read after close", st->path);
    if (!dtype_is_float(e->dtype))
        return vpd_error(VPD_ERR_FORMAT, "%s: tensor '%s' has dtype %s; vpd reads F32, F64, F16 or BF16", st->path,
                         e->name, e->dtype);
    int es = dtype_size(e->dtype);
    uint64_t total = e->end - e->begin;
    size_t numel = (size_t)(total / (uint64_t)es);
    if (fseeko(fp, (off_t)e->begin, SEEK_SET) != 0)
        return vpd_error(VPD_ERR_IO, "%s: tensor '%s': cannot seek to byte %llu: %s", st->path, e->name,
                         (unsigned long long)e->begin, strerror(errno));
    unsigned char *buf = malloc(ST_CHUNK_BYTES);
    if (!buf) return vpd_error(VPD_ERR_MEM, "%s: out of memory for a read buffer", st->path);
    size_t per_chunk = ST_CHUNK_BYTES / (size_t)es, done = 0;
    while (done < numel) {
        size_t k = numel - done < per_chunk ? numel - done : per_chunk;
        if (fread(buf, (size_t)es, k, fp) != k) {
            free(buf);
            return vpd_error(VPD_ERR_IO, "%s: tensor '%s': short read at element %zu of %zu (file changed?)",
                             st->path, e->name, done, numel);
        }
        real *o = out + done;
        if (es == 4) {
            for (size_t i = 0; i < k; i++) {
                const unsigned char *b = buf + 4 * i;
                o[i] = (real)bits_to_float((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                                           (uint32_t)b[3] << 24);
            }
        } else if (es == 8) {
            for (size_t i = 0; i < k; i++) {
                uint64_t u = le64(buf + 8 * i);
                double d;
                memcpy(&d, &u, 8);
                o[i] = (real)d;
            }
        } else if (!strcmp(e->dtype, "BF16")) {
            for (size_t i = 0; i < k; i++)
                o[i] = (real)bits_to_float(((uint32_t)buf[2 * i] | (uint32_t)buf[2 * i + 1] << 8) << 16);
        } else {
            for (size_t i = 0; i < k; i++)
                o[i] = (real)f16_to_float((uint16_t)(buf[2 * i] | buf[2 * i + 1] << 8));
        }
        done += k;
    }
    free(buf);
    /* finiteness: name the tensor and the first bad index, flat and as coordinates */
    for (size_t i = 0; i < numel; i++) {
        if (isfinite(out[i])) continue;
        char coord[128];
        size_t rem = i;
        int64_t idx[VPD_ST_MAX_DIMS];
        for (int d = e->ndim - 1; d >= 0; d--) {
            idx[d] = e->shape[d] ? (int64_t)(rem % (size_t)e->shape[d]) : 0;
            rem = e->shape[d] ? rem / (size_t)e->shape[d] : 0;
        }
        vpd_shape_str(coord, sizeof coord, e->ndim, idx);
        return vpd_error(VPD_ERR_VALUE, "%s: tensor '%s' has a non-finite value (%g) at flat index %zu, index %s",
                         st->path, e->name, (double)out[i], i, coord);
    }
    return VPD_OK;
}

vpd_status vpd_st_read(vpd_safetensors *st, const char *name, real *out, int ndim, const int64_t *shape) {
    int i = vpd_st_find(st, name);
    if (i < 0) return not_found(st, name);
    const vpd_st_entry *e = &st->entries[i];
    bool same = e->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = e->shape[d] == shape[d];
    if (!same) {
        char a[128], b[128];
        bool transposed = ndim == 2 && e->ndim == 2 && e->shape[0] == shape[1] && e->shape[1] == shape[0];
        return vpd_error(VPD_ERR_SHAPE, "%s: tensor '%s': expected shape %s, found %s%s", st->path, name,
                         vpd_shape_str(a, sizeof a, ndim, shape), vpd_shape_str(b, sizeof b, e->ndim, e->shape),
                         transposed ? " (transposed? PyTorch nn.Linear weights are [d_out, d_in])" : "");
    }
    return read_entry(st, e, out);
}

vpd_status vpd_st_read_alloc(vpd_safetensors *st, const char *name, real **out, int *ndim,
                             int64_t shape[VPD_MAX_DIMS]) {
    *out = NULL;
    int i = vpd_st_find(st, name);
    if (i < 0) return not_found(st, name);
    const vpd_st_entry *e = &st->entries[i];
    if (e->ndim > VPD_MAX_DIMS)
        return vpd_error(VPD_ERR_SHAPE, "%s: tensor '%s' has %d dimensions; vpd handles at most %d", st->path, name,
                         e->ndim, VPD_MAX_DIMS);
    size_t numel = 1;
    for (int d = 0; d < e->ndim; d++) numel *= (size_t)e->shape[d];
    real *x = vpd_malloc((numel ? numel : 1) * sizeof(real), name);
    if (!x) return VPD_ERR_MEM;
    vpd_status s = read_entry(st, e, x);
    if (s != VPD_OK) {
        vpd_free(x);
        return s;
    }
    *out = x;
    *ndim = e->ndim;
    for (int d = 0; d < e->ndim; d++) shape[d] = e->shape[d];
    return VPD_OK;
}

/* ---- writer ---------------------------------------------------------------------- */

vpd_status vpd_st_write(const char *path, const vpd_tensor *t, int n, const char *const *meta_kv, int n_meta) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return vpd_error(VPD_ERR_MEM, "%s: out of memory building the header", path);
    vpd_status s = VPD_OK;
    char *json = NULL;
    FILE *fp = NULL;
    char tmp[600];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        cJSON_Delete(root);
        return vpd_error(VPD_ERR_IO, "path too long: '%.80s...'", path);
    }
    if (n_meta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; meta && i < n_meta; i++) cJSON_AddStringToObject(meta, meta_kv[2 * i], meta_kv[2 * i + 1]);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        if (!t[i].name || !t[i].name[0] || !strcmp(t[i].name, "__metadata__")) {
            s = vpd_error(VPD_ERR_ARG, "%s: tensor %d has no usable name", path, i);
            goto out;
        }
        if (cJSON_GetObjectItemCaseSensitive(root, t[i].name)) {
            s = vpd_error(VPD_ERR_ARG, "%s: tensor '%s' given twice", path, t[i].name);
            goto out;
        }
        if (!vpd_tensor_is_contiguous(&t[i])) {
            s = vpd_error(VPD_ERR_ARG, "%s: tensor '%s' is not contiguous", path, t[i].name);
            goto out;
        }
        cJSON *e = cJSON_AddObjectToObject(root, t[i].name);
        cJSON_AddStringToObject(e, "dtype", "F32");
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t[i].ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t[i].shape[d]));
        uint64_t bytes = 4 * (uint64_t)vpd_tensor_numel(&t[i]);
        cJSON *of = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + bytes)));
        off += bytes;
    }
    json = cJSON_PrintUnformatted(root);
    if (!json) {
        s = vpd_error(VPD_ERR_MEM, "%s: out of memory printing the header", path);
        goto out;
    }
    /* pad with spaces so the data section starts 8-byte aligned, as the reference writer does */
    size_t jl = strlen(json), pad = (8 - jl % 8) % 8;
    uint64_t hlen = jl + pad;
    fp = fopen(tmp, "wb");
    if (!fp) {
        s = vpd_error(VPD_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
        goto out;
    }
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(hlen >> (8 * i));
    bool ok = fwrite(lenb, 1, 8, fp) == 8 && fwrite(json, 1, jl, fp) == jl;
    for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', fp) != EOF;
    unsigned char buf[4096];
    for (int i = 0; ok && i < n; i++) {
        size_t numel = (size_t)vpd_tensor_numel(&t[i]), k = 0;
        while (ok && k < numel) {
            size_t m = 0;
            for (; m < sizeof buf / 4 && k < numel; m++, k++) {
                float f = (float)t[i].data[k];
                uint32_t u;
                memcpy(&u, &f, 4);
                for (int b = 0; b < 4; b++) buf[4 * m + b] = (unsigned char)(u >> (8 * b));
            }
            ok = fwrite(buf, 4, m, fp) == m;
        }
    }
    if (ok) ok = fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    int cerr = fclose(fp);
    fp = NULL;
    if (!ok || cerr != 0) {
        s = vpd_error(VPD_ERR_IO, "writing '%s' failed: %s", tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        s = vpd_error(VPD_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        unlink(tmp);
    }
out:
    free(json);
    cJSON_Delete(root);
    return s;
}
