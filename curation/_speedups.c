/* Compiled inner loops of the filter, each with a pure-Python twin in curation/speedups.py.
 *
 * Built by `pip install` when a C compiler is present (the extension is optional: without it
 * the numpy versions run, with the same results, more slowly). Every function here is a plain
 * loop over bytes or over paths; anything unusual is handed back to the Python code, which
 * words the errors. Only the CPython C API and POSIX are used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ quotes */

/* Length of the run of backslashes ending just before a[q] (q > 0 or carry counts). */
static Py_ssize_t backslashes_before(const unsigned char *a, Py_ssize_t q, Py_ssize_t carry)
{
    Py_ssize_t j = q - 1;
    while (j >= 0 && a[j] == '\\')
        j--;
    return q - 1 - j + (j < 0 ? carry : 0);
}

static Py_ssize_t trailing_backslashes(const unsigned char *a, Py_ssize_t n, Py_ssize_t carry)
{
    return backslashes_before(a, n, carry);
}

/* real_quotes(buf, bs_carry) -> (bytes of int64 offsets, trailing backslash run)
 *
 * Offsets of the quotes of buf not escaped by an odd run of backslashes; bs_carry is the
 * run that ended the previous block. */
static PyObject *real_quotes(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t carry;
    if (!PyArg_ParseTuple(args, "y*n", &view, &carry))
        return NULL;
    const unsigned char *a = view.buf;
    Py_ssize_t n = view.len;
    Py_ssize_t count = 0;
    const unsigned char *p = a, *end = a + n;
    while (p < end && (p = memchr(p, '"', (size_t)(end - p))) != NULL) {
        count++;
        p++;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(int64_t));
    if (out == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    int64_t *pos = (int64_t *)PyBytes_AS_STRING(out);
    Py_ssize_t k = 0;
    p = a;
    while (p < end && (p = memchr(p, '"', (size_t)(end - p))) != NULL) {
        Py_ssize_t q = p - a;
        if ((q > 0 && a[q - 1] == '\\') || (q == 0 && carry)) {
            if (backslashes_before(a, q, carry) % 2) {
                p++;
                continue;
            }
        }
        pos[k++] = q;
        p++;
    }
    Py_ssize_t run = trailing_backslashes(a, n, carry);
    PyBuffer_Release(&view);
    if (k != count && _PyBytes_Resize(&out, k * (Py_ssize_t)sizeof(int64_t)) < 0)
        return NULL;
    return Py_BuildValue("(Nn)", out, run);
}

/* ------------------------------------------------------------------ list elements */

typedef struct {
    int64_t *data;
    Py_ssize_t len, cap;
} Int64s;

static int push(Int64s *v, int64_t x)
{
    if (v->len == v->cap) {
        Py_ssize_t cap = v->cap ? 2 * v->cap : 4096;
        int64_t *data = PyMem_Realloc(v->data, (size_t)cap * sizeof(int64_t));
        if (data == NULL)
            return -1;
        v->data = data;
        v->cap = cap;
    }
    v->data[v->len++] = x;
    return 0;
}

/* scan_list_block(buf, in_string, bs_carry, depth, first) ->
 *     (bytes of int64 delimiter offsets, commas, in_string, bs_carry, depth) or None
 *
 * One block of a top-level JSON list, in the plain case: the offsets of the list's element
 * delimiters (commas at depth 1, and the opening '[' when `first`), with the state to carry
 * to the next block. None when the block holds anything else at depth 0 or 1 (the list
 * closing, a '}' closing it, unbalanced brackets, data after the list): the numpy scanner
 * then redoes the block and words the problem. Bytes inside strings are skipped with memchr. */
static PyObject *scan_list_block(PyObject *self, PyObject *args)
{
    Py_buffer view;
    int in_string, first;
    Py_ssize_t carry, depth;
    if (!PyArg_ParseTuple(args, "y*innp", &view, &in_string, &carry, &depth, &first))
        return NULL;
    const unsigned char *a = view.buf;
    Py_ssize_t n = view.len;
    Int64s out = {NULL, 0, 0};
    Py_ssize_t commas = 0;
    int opened = 0, anomaly = 0, nomem = 0;
    Py_ssize_t pos = 0;
    while (!anomaly && !nomem) {
        const unsigned char *qp = pos < n ? memchr(a + pos, '"', (size_t)(n - pos)) : NULL;
        Py_ssize_t stop = qp ? qp - a : n;
        if (!in_string) {
            for (Py_ssize_t i = pos; i < stop; i++) {
                unsigned char c = a[i];
                if (c == '{' || c == '[') {
                    if (depth == 0) {
                        if (!(c == '[' && first && !opened && out.len == 0)) {
                            anomaly = 1;
                            break;
                        }
                        opened = 1;
                        if (push(&out, i) < 0) {
                            nomem = 1;
                            break;
                        }
                    }
                    depth++;
                }
                else if (c == '}' || c == ']') {
                    if (depth <= 1) {
                        anomaly = 1;
                        break;
                    }
                    depth--;
                }
                else if (c == ',') {
                    if (depth == 1) {
                        commas++;
                        if (push(&out, i) < 0) {
                            nomem = 1;
                            break;
                        }
                    }
                    else if (depth <= 0) {
                        anomaly = 1;
                        break;
                    }
                }
            }
        }
        if (qp == NULL || anomaly || nomem)
            break;
        Py_ssize_t q = stop;
        int escaped = ((q > 0 && a[q - 1] == '\\') || (q == 0 && carry)) && backslashes_before(a, q, carry) % 2;
        if (!escaped)
            in_string ^= 1;
        pos = q + 1;
    }
    Py_ssize_t run = trailing_backslashes(a, n, carry);
    PyBuffer_Release(&view);
    if (nomem) {
        PyMem_Free(out.data);
        return PyErr_NoMemory();
    }
    if (anomaly) {
        PyMem_Free(out.data);
        Py_RETURN_NONE;
    }
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)out.data, out.len * (Py_ssize_t)sizeof(int64_t));
    PyMem_Free(out.data);
    if (bytes == NULL)
        return NULL;
    return Py_BuildValue("(Nninn)", bytes, commas, in_string, run, depth);
}

/* ------------------------------------------------------------------ stat */

#define NEED_DIR (-1)      /* the path's directory has no open fd in `fds` yet */
#define NEED_GENERAL (-2)  /* a spelling the general path must look at (or not UTF-8) */
#define STAT_FAILED (-1000) /* minus errno below this */

static int needs_general(const char *s, Py_ssize_t len)
{
    if (len == 0 || s[0] == '/' || s[0] == '\\')
        return 1;
    if ((Py_ssize_t)strlen(s) != len) /* a NUL inside */
        return 1;
    if (memchr(s, ':', (size_t)len) != NULL)
        return 1;
    for (Py_ssize_t i = 0; i + 1 < len; i++)
        if (s[i] == '.' && s[i + 1] == '.')
            return 1;
    return 0;
}

static int int64_out(PyObject *obj, Py_buffer *view, Py_ssize_t n, const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->len != n * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_Format(PyExc_ValueError, "%s must hold %zd int64 values", what, n);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The directory fd and leaf name of each path, with the GIL: fills leaf[i] and dirfd[i], or
 * leaf[i] = NULL and modes[i] = NEED_DIR / NEED_GENERAL. Returns -1 with an exception set. */
static int split_names(PyObject *names, PyObject *fds, const char **leaf, int *dirfd, int64_t *modes)
{
    Py_ssize_t n = PyList_GET_SIZE(names);
    const char *prev_dir = NULL;
    Py_ssize_t prev_len = -1;
    int prev_fd = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(names, i);
        leaf[i] = NULL;
        Py_ssize_t len;
        const char *s = PyUnicode_Check(item) ? PyUnicode_AsUTF8AndSize(item, &len) : NULL;
        if (s == NULL) {
            PyErr_Clear(); /* surrogates and the like: the general path decides */
            modes[i] = NEED_GENERAL;
            continue;
        }
        if (needs_general(s, len)) {
            modes[i] = NEED_GENERAL;
            continue;
        }
        const char *slash = NULL;
        for (Py_ssize_t j = len - 1; j >= 0; j--)
            if (s[j] == '/') {
                slash = s + j;
                break;
            }
        Py_ssize_t dlen = slash ? slash - s : 0;
        if (!(prev_dir != NULL && dlen == prev_len && memcmp(prev_dir, s, (size_t)dlen) == 0)) {
            PyObject *key = PyUnicode_DecodeUTF8(s, dlen, "strict");
            if (key == NULL)
                return -1;
            PyObject *fd = PyDict_GetItemWithError(fds, key);
            Py_DECREF(key);
            if (fd == NULL && PyErr_Occurred())
                return -1;
            prev_fd = -1;
            if (fd != NULL && PyLong_Check(fd)) {
                long v = PyLong_AsLong(fd);
                if (v == -1 && PyErr_Occurred())
                    return -1;
                prev_fd = (int)v;
            }
            prev_dir = s;
            prev_len = dlen;
        }
        if (prev_fd < 0) {
            modes[i] = NEED_DIR;
            continue;
        }
        dirfd[i] = prev_fd;
        leaf[i] = slash ? slash + 1 : s;
        modes[i] = 0;
    }
    return 0;
}

typedef struct {
    Py_buffer sv, tv, mv;
    int have;
} Outs;

static void release_outs(Outs *o)
{
    if (o->have > 0)
        PyBuffer_Release(&o->sv);
    if (o->have > 1)
        PyBuffer_Release(&o->tv);
    if (o->have > 2)
        PyBuffer_Release(&o->mv);
    o->have = 0;
}

static int get_outs(Outs *o, PyObject *s, PyObject *t, PyObject *m, Py_ssize_t n)
{
    o->have = 0;
    if (int64_out(s, &o->sv, n, "sizes") < 0)
        return -1;
    o->have = 1;
    if (int64_out(t, &o->tv, n, "mtimes") < 0) {
        release_outs(o);
        return -1;
    }
    o->have = 2;
    if (int64_out(m, &o->mv, n, "modes") < 0) {
        release_outs(o);
        return -1;
    }
    o->have = 3;
    return 0;
}

/* The arguments stat_in_dirs and read_in_dirs share: the outputs, then each path's directory
 * fd and leaf name (split_names). Returns -1 with an exception set, everything released. */
typedef struct {
    Outs o;
    const char **leaf;
    int *dirfd;
    Py_ssize_t n;
    int64_t *sizes, *mtimes, *modes;
} Paths;

static void release_paths(Paths *p)
{
    PyMem_Free(p->leaf);
    PyMem_Free(p->dirfd);
    p->leaf = NULL;
    p->dirfd = NULL;
    release_outs(&p->o);
}

static int get_paths(Paths *p, PyObject *names, PyObject *fds, PyObject *s, PyObject *t, PyObject *m)
{
    p->n = PyList_GET_SIZE(names);
    p->leaf = NULL;
    p->dirfd = NULL;
    if (get_outs(&p->o, s, t, m, p->n) < 0)
        return -1;
    p->sizes = p->o.sv.buf;
    p->mtimes = p->o.tv.buf;
    p->modes = p->o.mv.buf;
    p->leaf = PyMem_Malloc((size_t)(p->n ? p->n : 1) * sizeof(char *));
    p->dirfd = PyMem_Malloc((size_t)(p->n ? p->n : 1) * sizeof(int));
    if (p->leaf == NULL || p->dirfd == NULL) {
        PyErr_NoMemory();
        release_paths(p);
        return -1;
    }
    if (split_names(names, fds, p->leaf, p->dirfd, p->modes) < 0) {
        release_paths(p);
        return -1;
    }
    return 0;
}

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000LL + (int64_t)st->st_mtim.tv_nsec;
}

/* stat_in_dirs(names, fds, sizes, mtimes, modes)
 *
 * For each relative path names[i] ("dir/sub/file"): fstatat(fds[dir], file,
 * AT_SYMLINK_NOFOLLOW), where fds maps a directory (as spelled in the path, "" for the root)
 * to an open directory fd. Fills sizes[i], mtimes[i] (ns) and modes[i]; a negative mode
 * says why not: NEED_DIR, NEED_GENERAL, or STAT_FAILED - errno. The outputs are writable
 * int64 buffers of len(names). The system calls run without the GIL. */
static PyObject *stat_in_dirs(PyObject *self, PyObject *args)
{
    PyObject *names, *fds, *s, *t, *m;
    if (!PyArg_ParseTuple(args, "O!O!OOO", &PyList_Type, &names, &PyDict_Type, &fds, &s, &t, &m))
        return NULL;
    Paths p;
    if (get_paths(&p, names, fds, s, t, m) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    struct stat st;
    for (Py_ssize_t i = 0; i < p.n; i++) {
        p.sizes[i] = p.mtimes[i] = 0;
        if (p.leaf[i] == NULL)
            continue;
        if (fstatat(p.dirfd[i], p.leaf[i], &st, AT_SYMLINK_NOFOLLOW) != 0) {
            p.modes[i] = STAT_FAILED - errno;
            continue;
        }
        p.sizes[i] = (int64_t)st.st_size;
        p.mtimes[i] = mtime_ns(&st);
        p.modes[i] = (int64_t)st.st_mode;
    }
    Py_END_ALLOW_THREADS
    release_paths(&p);
    Py_RETURN_NONE;
}

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

/* The whole of an open regular file, as bytes (NULL and errno set on failure). It reads
 * size + 1 bytes first: getting exactly `size` back means end of file, one system call in the
 * usual case; a file that grew meanwhile is read to its end. */
static PyObject *read_fd(int fd, Py_ssize_t size)
{
    Py_ssize_t cap = size + 1, got = 0;
    PyObject *buf = PyBytes_FromStringAndSize(NULL, cap);
    if (buf == NULL)
        return NULL;
    for (;;) {
        ssize_t r = read(fd, PyBytes_AS_STRING(buf) + got, (size_t)(cap - got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            Py_DECREF(buf);
            errno = e;
            return NULL;
        }
        if (r == 0)
            break;
        got += r;
        if (got == cap) {
            cap = cap < (1 << 20) ? cap + (1 << 20) : 2 * cap;
            if (_PyBytes_Resize(&buf, cap) < 0)
                return NULL;
        }
    }
    if (got != cap && _PyBytes_Resize(&buf, got) < 0)
        return NULL;
    return buf;
}

/* read_in_dirs(names, fds, budget, sizes, mtimes, modes) -> list of bytes or None
 *
 * Opens each path as stat_in_dirs finds it (openat with O_NOFOLLOW and O_NONBLOCK: a symlink
 * or a FIFO is never followed or waited on), checks it is a regular file and reads it whole.
 * sizes/mtimes/modes are from fstat of the open file; a negative mode is a code as for
 * stat_in_dirs, or NOT_READ for the paths after `budget` bytes were read (read them in a
 * later call). Failures leave None, for the general path to look at and word. */
#define NOT_READ (-3)
#define NOT_REGULAR (-4)

static PyObject *read_in_dirs(PyObject *self, PyObject *args)
{
    PyObject *names, *fds, *s, *t, *m;
    Py_ssize_t budget;
    if (!PyArg_ParseTuple(args, "O!O!nOOO", &PyList_Type, &names, &PyDict_Type, &fds, &budget, &s, &t, &m))
        return NULL;
    Paths p;
    if (get_paths(&p, names, fds, s, t, m) < 0)
        return NULL;
    PyObject *out = PyList_New(p.n);
    if (out == NULL) {
        release_paths(&p);
        return NULL;
    }
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < p.n; i++) {
        p.sizes[i] = p.mtimes[i] = 0;
        Py_INCREF(Py_None);
        PyList_SET_ITEM(out, i, Py_None);
        if (p.leaf[i] == NULL)
            continue;
        if (total >= budget) {
            p.modes[i] = NOT_READ;
            continue;
        }
        int fd = openat(p.dirfd[i], p.leaf[i], O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            p.modes[i] = STAT_FAILED - errno;
            continue;
        }
        struct stat st;
        if (fstat(fd, &st) != 0) {
            p.modes[i] = STAT_FAILED - errno;
            close(fd);
            continue;
        }
        if (!S_ISREG(st.st_mode)) {
            p.modes[i] = NOT_REGULAR;
            close(fd);
            continue;
        }
        PyObject *data = read_fd(fd, (Py_ssize_t)st.st_size);
        int e = errno;
        close(fd);
        if (data == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(out);
                release_paths(&p);
                return NULL;
            }
            p.modes[i] = STAT_FAILED - e;
            continue;
        }
        total += PyBytes_GET_SIZE(data);
        p.sizes[i] = (int64_t)st.st_size;
        p.mtimes[i] = mtime_ns(&st);
        p.modes[i] = (int64_t)st.st_mode;
        PyList_SET_ITEM(out, i, data); /* steals data; drops nothing, so drop the None's reference */
        Py_DECREF(Py_None);
    }
    release_paths(&p);
    return out;
}

/* ------------------------------------------------------------------ path index */

/* An open-addressing hash table of row numbers (int32, -1 = empty, a power of two long) over
 * the strings of an Arrow string column (int64 offsets, data): a path's row in the image
 * sidecar without a Python dict of all its paths in every worker. */

static uint64_t fnv1a(const unsigned char *s, Py_ssize_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

typedef struct {
    Py_buffer ov, dv, tv;
    const int64_t *off;
    const unsigned char *data;
    int32_t *table;
    Py_ssize_t rows, mask;
} Index;

static void release_index(Index *x, int have)
{
    if (have > 0)
        PyBuffer_Release(&x->ov);
    if (have > 1)
        PyBuffer_Release(&x->dv);
    if (have > 2)
        PyBuffer_Release(&x->tv);
}

/* Borrow the three buffers and check their sizes: O(1), so a lookup of a few paths does not
 * walk the whole column. The offsets themselves are checked row by row where a row is used
 * (row_bounds), which keeps a bad column from reading outside its buffers. */
static int get_index(Index *x, PyObject *off, PyObject *data, PyObject *table, int writable)
{
    if (PyObject_GetBuffer(off, &x->ov, PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (PyObject_GetBuffer(data, &x->dv, PyBUF_C_CONTIGUOUS) < 0) {
        release_index(x, 1);
        return -1;
    }
    if (PyObject_GetBuffer(table, &x->tv, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0) {
        release_index(x, 2);
        return -1;
    }
    Py_ssize_t slots = x->tv.len / (Py_ssize_t)sizeof(int32_t);
    x->rows = x->ov.len / (Py_ssize_t)sizeof(int64_t) - 1;
    x->off = x->ov.buf;
    x->data = x->dv.buf;
    x->table = x->tv.buf;
    x->mask = slots - 1;
    if (x->rows < 0 || slots < 1 || (slots & (slots - 1)) != 0 || slots <= x->rows) {
        PyErr_SetString(PyExc_ValueError, "bad path index: offsets, data or table size");
        release_index(x, 3);
        return -1;
    }
    return 0;
}

/* row r's string as [start, start + len) of the data buffer; 0 if r or its offsets are bad */
static int row_bounds(const Index *x, int32_t r, const unsigned char **start, Py_ssize_t *len)
{
    if (r < 0 || r >= x->rows)
        return 0;
    int64_t a = x->off[r], b = x->off[r + 1];
    if (a < 0 || b < a || b > (int64_t)x->dv.len)
        return 0;
    *start = x->data + a;
    *len = (Py_ssize_t)(b - a);
    return 1;
}

/* the slot holding s, or the empty slot where it would go; -1 if the table names a bad row */
static Py_ssize_t find_slot(const Index *x, const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t slot = (Py_ssize_t)(fnv1a(s, n) & (uint64_t)x->mask);
    for (Py_ssize_t probes = 0; probes <= x->mask; probes++) {
        int32_t r = x->table[slot];
        if (r < 0)
            return slot;
        const unsigned char *t;
        Py_ssize_t len;
        if (!row_bounds(x, r, &t, &len))
            return -1;
        if (len == n && memcmp(t, s, (size_t)n) == 0)
            return slot;
        slot = (slot + 1) & x->mask;
    }
    return -1; /* a full table: not one build_path_index made */
}

static PyObject *bad_index(Index *x)
{
    release_index(x, 3);
    PyErr_SetString(PyExc_ValueError, "bad path index: the table or the offsets do not match the column");
    return NULL;
}

/* build_path_index(offsets, data, table) -> distinct paths; a path twice keeps its last row */
static PyObject *build_path_index(PyObject *self, PyObject *args)
{
    PyObject *off, *data, *table;
    if (!PyArg_ParseTuple(args, "OOO", &off, &data, &table))
        return NULL;
    Index x;
    if (get_index(&x, off, data, table, 1) < 0)
        return NULL;
    if (x.rows > INT32_MAX) {
        release_index(&x, 3);
        PyErr_SetString(PyExc_ValueError, "too many rows for a path index");
        return NULL;
    }
    for (Py_ssize_t i = 0; i <= x.mask; i++)
        x.table[i] = -1;
    Py_ssize_t distinct = 0;
    for (Py_ssize_t r = 0; r < x.rows; r++) {
        const unsigned char *s;
        Py_ssize_t len;
        if (!row_bounds(&x, (int32_t)r, &s, &len))
            return bad_index(&x);
        Py_ssize_t slot = find_slot(&x, s, len);
        if (slot < 0)
            return bad_index(&x);
        distinct += x.table[slot] < 0;
        x.table[slot] = (int32_t)r;
    }
    release_index(&x, 3);
    return PyLong_FromSsize_t(distinct);
}

/* lookup_paths(names, offsets, data, table, rows_out): each name's row, or -1 */
static PyObject *lookup_paths(PyObject *self, PyObject *args)
{
    PyObject *names, *off, *data, *table, *out;
    if (!PyArg_ParseTuple(args, "O!OOOO", &PyList_Type, &names, &off, &data, &table, &out))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(names);
    Py_buffer rv;
    if (int64_out(out, &rv, n, "rows") < 0)
        return NULL;
    Index x;
    if (get_index(&x, off, data, table, 0) < 0) {
        PyBuffer_Release(&rv);
        return NULL;
    }
    int64_t *rows = rv.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(names, i);
        Py_ssize_t len;
        const char *s = PyUnicode_Check(item) ? PyUnicode_AsUTF8AndSize(item, &len) : NULL;
        if (s == NULL) { /* not a str, or not UTF-8 (lone surrogates): no sidecar path equals it */
            PyErr_Clear();
            rows[i] = -1;
            continue;
        }
        Py_ssize_t slot = find_slot(&x, (const unsigned char *)s, len);
        if (slot < 0) {
            PyBuffer_Release(&rv);
            return bad_index(&x);
        }
        rows[i] = x.table[slot];
    }
    release_index(&x, 3);
    PyBuffer_Release(&rv);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ image headers */

/* fast_probe(data) -> (width, height, "JPEG" | "PNG"), None (ask Pillow), or True (a JPEG
 * with an EXIF block: run the Python parser, which checks the block as Pillow would).
 * The same decisions as curation.image_header._fast_jpeg / _fast_png, step for step. */

static int starts(const unsigned char *d, Py_ssize_t n, Py_ssize_t at, const char *prefix, Py_ssize_t len)
{
    return at >= 0 && at + len <= n && memcmp(d + at, prefix, (size_t)len) == 0;
}

static int jpeg_fast_marker(unsigned char m)
{
    return m == 0xC0 || m == 0xC1 || m == 0xC2 || m == 0xC4 || m == 0xDA || m == 0xDB || m == 0xDD || m == 0xFE ||
           (m >= 0xE0 && m <= 0xEF);
}

/* 1: size found (w, h); 0: ask Pillow; 2: EXIF, ask the Python parser */
static int fast_jpeg(const unsigned char *d, Py_ssize_t n, long *w, long *h)
{
    Py_ssize_t pos = 2;
    int have_size = 0, exif = 0, has_dpi = 0;
    for (;;) {
        if (pos + 4 > n || d[pos] != 0xFF)
            return 0;
        unsigned char marker = d[pos + 1];
        if (!jpeg_fast_marker(marker))
            return 0;
        Py_ssize_t length = ((Py_ssize_t)d[pos + 2] << 8) | d[pos + 3];
        Py_ssize_t end = pos + 2 + length;
        if (length < 2 || end > n)
            return 0;
        Py_ssize_t body = pos + 4;
        if (marker == 0xDA) {
            if (!have_size)
                return 0;
            return exif && !has_dpi ? 2 : 1;
        }
        if (marker >= 0xE0 && marker != 0xFE) {
            if (marker == 0xE0) {
                if (starts(d, n, body, "JFIF", 4)) {
                    if (length - 2 < 7)
                        return 0;
                    if (length - 2 >= 12 && (d[body + 7] == 1 || d[body + 7] == 2))
                        has_dpi = 1;
                }
            }
            else if (marker == 0xE1) {
                if (starts(d, n, body, "Exif\0\0", 6))
                    exif = 1;
            }
            else if (marker == 0xE2) {
                if (starts(d, n, body, "ICC_PROFILE\0", 12) || starts(d, n, body, "MPF\0", 4))
                    return 0;
            }
            else if (marker == 0xED) {
                if (starts(d, n, body, "Photoshop 3.0\0", 14))
                    return 0;
            }
            else if (marker == 0xEE && starts(d, n, body, "Adobe", 5)) {
                return 0;
            }
        }
        else if (marker == 0xC0 || marker == 0xC1 || marker == 0xC2) {
            Py_ssize_t seg = length - 2;
            if (seg < 6 || (seg - 6) % 3 || d[body] != 8 || !(d[body + 5] == 1 || d[body + 5] == 3 || d[body + 5] == 4))
                return 0;
            *h = ((long)d[body + 1] << 8) | d[body + 2];
            *w = ((long)d[body + 3] << 8) | d[body + 4];
            if (!*w || !*h)
                return 0;
            have_size = 1;
        }
        else if (marker == 0xDB) {
            Py_ssize_t i = body;
            while (i < end)
                i += d[i] < 16 ? 65 : 129;
            if (i != end)
                return 0;
        }
        pos = end;
    }
}

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320U ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32_of(const unsigned char *p, Py_ssize_t n)
{
    uint32_t c = 0xFFFFFFFFU;
    for (Py_ssize_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFU;
}

static uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int png_mode_ok(unsigned char depth, unsigned char colour)
{
    switch (colour) {
    case 0:
        return depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16;
    case 2:
    case 4:
    case 6:
        return depth == 8 || depth == 16;
    case 3:
        return depth == 1 || depth == 2 || depth == 4 || depth == 8;
    default:
        return 0;
    }
}

static int fast_png(const unsigned char *d, Py_ssize_t n, long *w, long *h)
{
    if (n < 41 || !starts(d, n, 8, "\0\0\0\x0dIHDR", 8))
        return 0;
    if (crc32_of(d + 12, 17) != be32(d + 29))
        return 0;
    if (!png_mode_ok(d[24], d[25]) || d[27])
        return 0;
    uint32_t width = be32(d + 16), height = be32(d + 20);
    if (!width || !height)
        return 0;
    Py_ssize_t pos = 33;
    for (;;) {
        if (pos + 8 > n)
            return 0;
        const unsigned char *cid = d + pos + 4;
        if (memcmp(cid, "IDAT", 4) == 0) {
            *w = (long)width;
            *h = (long)height;
            return 1;
        }
        Py_ssize_t length = (Py_ssize_t)be32(d + pos);
        Py_ssize_t end = pos + 8 + length;
        if (!(memcmp(cid, "PLTE", 4) == 0 || memcmp(cid, "tEXt", 4) == 0) || length > (1 << 20) || end + 4 > n)
            return 0;
        if (crc32_of(d + pos + 4, end - pos - 4) != be32(d + end))
            return 0;
        pos = end + 4;
    }
}

static PyObject *fast_probe(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *d = view.buf;
    Py_ssize_t n = view.len;
    long w = 0, h = 0;
    int r = 0;
    const char *fmt = NULL;
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) {
        r = fast_jpeg(d, n, &w, &h);
        fmt = "JPEG";
    }
    else if (starts(d, n, 0, "\x89PNG\r\n\x1a\n", 8)) {
        r = fast_png(d, n, &w, &h);
        fmt = "PNG";
    }
    PyBuffer_Release(&view);
    if (r == 2)
        Py_RETURN_TRUE;
    if (r == 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(lls)", w, h, fmt);
}

/* ------------------------------------------------------------------ module */

/* ------------------------------------------------------------------ plain sharegpt records */

/* A growable byte buffer (the plain parser's outputs). */
typedef struct {
    char *p;
    size_t len, cap;
} GrowBuf;

static int grow(GrowBuf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    char *q = realloc(b->p, cap);
    if (q == NULL)
        return -1;
    b->p = q;
    b->cap = cap;
    return 0;
}

static int put_i32(GrowBuf *b, int32_t v)
{
    if (grow(b, sizeof v) < 0)
        return -1;
    memcpy(b->p + b->len, &v, sizeof v);
    b->len += sizeof v;
    return 0;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
/* any byte of x that is zero / below n (n <= 128) */
#define HAS_ZERO(x) (((x) - ONES) & ~(x) & HIGHS)
#define HAS_LESS(x, n) (((x) - ONES * (n)) & ~(x) & HIGHS)

static const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* Length of the valid UTF-8 sequence of 2 to 4 bytes at p (p[0] >= 0x80), or 0. */
static int utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    if (c >= 0xC2 && c <= 0xDF)
        return end - p >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && p[1] < 0xA0)
            return 0; /* overlong */
        if (c == 0xED && p[1] >= 0xA0)
            return 0; /* a surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xF4 && p[1] >= 0x90)
            return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

static int hex4(const unsigned char *p, const unsigned char *end, uint32_t *out)
{
    if (end - p < 4)
        return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* The JSON string whose opening quote is p[-1], unescaped into out (UTF-8). Returns the byte
 * after its closing quote, or NULL for anything a strict parser refuses: a raw control
 * character, bad UTF-8, an unknown escape, a lone surrogate, no closing quote. The output
 * is never longer than the input, so out is grown once. */
static const unsigned char *json_string(const unsigned char *p, const unsigned char *end, GrowBuf *out)
{
    if (grow(out, (size_t)(end - p)) < 0)
        return NULL;
    unsigned char *o = (unsigned char *)out->p + out->len;
    for (;;) {
        while (end - p >= 8) {
            uint64_t v;
            memcpy(&v, p, 8);
            if ((v & HIGHS) || HAS_LESS(v, 0x20) || HAS_ZERO(v ^ (ONES * '"')) || HAS_ZERO(v ^ (ONES * '\\')))
                break;
            memcpy(o, p, 8);
            o += 8;
            p += 8;
        }
        if (p >= end)
            return NULL;
        unsigned char c = *p;
        if (c == '"') {
            out->len = (size_t)(o - (unsigned char *)out->p);
            return p + 1;
        }
        if (c < 0x20)
            return NULL;
        if (c < 0x80) {
            if (c != '\\') {
                *o++ = c;
                p++;
                continue;
            }
            if (end - p < 2)
                return NULL;
            unsigned char e = p[1];
            p += 2;
            switch (e) {
            case '"': *o++ = '"'; continue;
            case '\\': *o++ = '\\'; continue;
            case '/': *o++ = '/'; continue;
            case 'b': *o++ = '\b'; continue;
            case 'f': *o++ = '\f'; continue;
            case 'n': *o++ = '\n'; continue;
            case 'r': *o++ = '\r'; continue;
            case 't': *o++ = '\t'; continue;
            case 'u': break;
            default: return NULL;
            }
            uint32_t cp;
            if (hex4(p, end, &cp) < 0)
                return NULL;
            p += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return NULL; /* a low surrogate first */
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, end, &lo) < 0)
                    return NULL;
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return NULL;
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp < 0x80) {
                *o++ = (unsigned char)cp;
            } else if (cp < 0x800) {
                *o++ = (unsigned char)(0xC0 | (cp >> 6));
                *o++ = (unsigned char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                *o++ = (unsigned char)(0xE0 | (cp >> 12));
                *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (unsigned char)(0x80 | (cp & 0x3F));
            } else {
                *o++ = (unsigned char)(0xF0 | (cp >> 18));
                *o++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
                *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (unsigned char)(0x80 | (cp & 0x3F));
            }
            continue;
        }
        int n = utf8_seq(p, end);
        if (n == 0)
            return NULL;
        memcpy(o, p, (size_t)n);
        o += n;
        p += n;
    }
}

/* p at a key's opening quote: the key spelled exactly (no escapes) and the colon after it. */
static const unsigned char *key_colon(const unsigned char *p, const unsigned char *end, const char *key, Py_ssize_t klen)
{
    if (end - p < klen + 2 || p[0] != '"' || memcmp(p + 1, key, (size_t)klen) != 0 || p[klen + 1] != '"')
        return NULL;
    p = skip_ws(p + klen + 2, end);
    if (p >= end || *p != ':')
        return NULL;
    return skip_ws(p + 1, end);
}

typedef struct {
    GrowBuf turns, role_off, role, content_off, content, image_rows, image_off, image;
} PlainOut;

/* After a list element (p past it): 1 at the list's ']' (*pp left on it), 0 past a ',' and
 * the blanks after it, -1 for anything else. */
static int next_element(const unsigned char **pp, const unsigned char *end)
{
    const unsigned char *p = skip_ws(*pp, end);
    if (p >= end || (*p != ']' && *p != ','))
        return -1;
    if (*p == ']') {
        *pp = p;
        return 1;
    }
    *pp = skip_ws(p + 1, end);
    return 0;
}

/* One record, [p, end): 1 and its strings appended when it is plain, else 0 (its partial
 * output is then dropped by the caller); -1 when out of memory. */
static int plain_record(const unsigned char *p, const unsigned char *end, PlainOut *o, const char *mkey,
                        Py_ssize_t mlen, const char *rkey, Py_ssize_t rlen, const char *ckey, Py_ssize_t clen)
{
#define NEED(cond) do { if (!(cond)) return 0; } while (0)
#define EXPECT(c) do { NEED(p < end && *p == (c)); p = skip_ws(p + 1, end); } while (0)
#define STR(buf, offs) do { \
        NEED(p < end && *p == '"'); \
        p = json_string(p + 1, end, &(buf)); \
        NEED(p != NULL); \
        if ((buf).len > INT32_MAX || put_i32(&(offs), (int32_t)(buf).len) < 0) return -1; \
    } while (0)
    int last;
    p = skip_ws(p, end);
    EXPECT('{');
    NEED((p = key_colon(p, end, mkey, mlen)) != NULL);
    EXPECT('[');
    do { /* one or more turns */
        EXPECT('{');
        NEED((p = key_colon(p, end, rkey, rlen)) != NULL);
        STR(o->role, o->role_off);
        p = skip_ws(p, end);
        EXPECT(',');
        NEED((p = key_colon(p, end, ckey, clen)) != NULL);
        STR(o->content, o->content_off);
        p = skip_ws(p, end);
        EXPECT('}');
        NEED((last = next_element(&p, end)) >= 0);
    } while (!last);
    p = skip_ws(p + 1, end);
    EXPECT(',');
    NEED((p = key_colon(p, end, "images", 6)) != NULL);
    EXPECT('[');
    NEED(p < end);
    if (*p != ']') {
        do { /* zero or more paths */
            STR(o->image, o->image_off);
            NEED((last = next_element(&p, end)) >= 0);
        } while (!last);
    }
    p = skip_ws(p + 1, end);
    EXPECT('}');
    NEED(p == end);
    if (put_i32(&o->turns, (int32_t)(o->role_off.len / 4 - 1)) < 0)
        return -1;
    if (put_i32(&o->image_rows, (int32_t)(o->image_off.len / 4 - 1)) < 0)
        return -1;
    return 1;
#undef STR
#undef EXPECT
#undef NEED
}

/* parse_plain(buf, starts, ends, messages_key, role_key, content_key)
 *
 * Each span buf[starts[i]:ends[i]] (int64 buffers) that is one plain sharegpt record
 * ({"<messages>": [{"<role>": str, "<content>": str}, ...1 or more], "images": [str, ...]},
 * those keys only, in that order, unescaped) has its strings appended to Arrow-style
 * columns. Returns (ok: bytes, one 0/1 per span; then int32 offsets and UTF-8 data as bytes:
 * turns per plain row, role offsets, role data, content offsets, content data, images per
 * plain row, image offsets, image data). Any other span is left to the caller. */
static PyObject *parse_plain(PyObject *self, PyObject *args)
{
    Py_buffer buf, sv, ev;
    const char *mkey, *rkey, *ckey;
    Py_ssize_t mlen, rlen, clen;
    if (!PyArg_ParseTuple(args, "y*y*y*y#y#y#", &buf, &sv, &ev, &mkey, &mlen, &rkey, &rlen, &ckey, &clen))
        return NULL;
    PyObject *result = NULL, *ok = NULL;
    PlainOut o;
    memset(&o, 0, sizeof o);
    GrowBuf *all[] = {&o.turns, &o.role_off, &o.role, &o.content_off, &o.content, &o.image_rows, &o.image_off, &o.image};
    const int nbufs = (int)(sizeof all / sizeof all[0]);
    Py_ssize_t n = sv.len / (Py_ssize_t)sizeof(int64_t);
    if (ev.len != sv.len || sv.len % (Py_ssize_t)sizeof(int64_t) != 0) {
        PyErr_SetString(PyExc_ValueError, "starts and ends must be int64 arrays of one length");
        goto done;
    }
    ok = PyBytes_FromStringAndSize(NULL, n);
    if (ok == NULL)
        goto done;
    char *okp = PyBytes_AS_STRING(ok);
    const int64_t *starts = sv.buf, *ends = ev.buf;
    const unsigned char *a = buf.buf;
    int64_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (starts[i] < 0 || ends[i] < starts[i] || ends[i] > buf.len) {
            PyErr_SetString(PyExc_ValueError, "a span lies outside the buffer");
            goto done;
        }
        total += ends[i] - starts[i];
    }
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    failed = grow(&o.content, (size_t)total) < 0 || put_i32(&o.turns, 0) < 0 || put_i32(&o.role_off, 0) < 0
             || put_i32(&o.content_off, 0) < 0 || put_i32(&o.image_rows, 0) < 0 || put_i32(&o.image_off, 0) < 0;
    for (Py_ssize_t i = 0; i < n && !failed; i++) {
        size_t mark[8];
        for (int b = 0; b < nbufs; b++)
            mark[b] = all[b]->len;
        int r = plain_record(a + starts[i], a + ends[i], &o, mkey, mlen, rkey, rlen, ckey, clen);
        if (r < 0)
            failed = 1;
        okp[i] = (char)(r == 1);
        if (r != 1)
            for (int b = 0; b < nbufs; b++)
                all[b]->len = mark[b];
    }
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyTuple_New(1 + nbufs);
    if (result == NULL)
        goto done;
    Py_INCREF(ok);
    PyTuple_SET_ITEM(result, 0, ok);
    for (int b = 0; b < nbufs; b++) {
        PyObject *bytes = PyBytes_FromStringAndSize(all[b]->p ? all[b]->p : "", (Py_ssize_t)all[b]->len);
        if (bytes == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyTuple_SET_ITEM(result, 1 + b, bytes);
    }
done:
    Py_XDECREF(ok);
    for (int b = 0; b < 8; b++)
        free(all[b]->p);
    PyBuffer_Release(&buf);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&ev);
    return result;
}

/* newlines_before(buf, positions) -> (bytes of int64 counts, total)
 *
 * For each of the ascending int64 offsets positions[i], the number of '\n' bytes of buf
 * before it; and the number in the whole of buf. */
static PyObject *newlines_before(PyObject *self, PyObject *args)
{
    Py_buffer buf, pv;
    if (!PyArg_ParseTuple(args, "y*y*", &buf, &pv))
        return NULL;
    PyObject *out = NULL;
    Py_ssize_t n = pv.len / (Py_ssize_t)sizeof(int64_t);
    const int64_t *pos = pv.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (pos[i] < 0 || pos[i] > buf.len || (i && pos[i] < pos[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "positions must be ascending offsets within the buffer");
            goto done;
        }
    }
    out = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t));
    if (out == NULL)
        goto done;
    int64_t *counts = (int64_t *)PyBytes_AS_STRING(out);
    const char *a = buf.buf, *p = a, *end = a + buf.len;
    int64_t seen = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *stop = a + pos[i];
        while (p < stop && (p = memchr(p, '\n', (size_t)(stop - p))) != NULL) {
            seen++;
            p++;
        }
        if (p == NULL)
            p = stop;
        counts[i] = seen;
    }
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        seen++;
        p++;
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&pv);
    if (out == NULL)
        return NULL;
    return Py_BuildValue("(NL)", out, (long long)seen);
}

static PyMethodDef methods[] = {
    {"real_quotes", real_quotes, METH_VARARGS, "Offsets of the unescaped quotes of a block."},
    {"newlines_before", newlines_before, METH_VARARGS, "Newlines of a buffer before each of ascending offsets."},
    {"parse_plain", parse_plain, METH_VARARGS, "Columns of the spans that are plain sharegpt records."},
    {"scan_list_block", scan_list_block, METH_VARARGS, "Element delimiters of one block of a JSON list."},
    {"stat_in_dirs", stat_in_dirs, METH_VARARGS, "fstatat each relative path under its directory's fd."},
    {"read_in_dirs", read_in_dirs, METH_VARARGS, "Open, fstat and read each relative path."},
    {"fast_probe", fast_probe, METH_O, "Size and format from a JPEG or PNG header Pillow certainly accepts."},
    {"build_path_index", build_path_index, METH_VARARGS, "Hash table of the rows of a string column."},
    {"lookup_paths", lookup_paths, METH_VARARGS, "Rows of paths in a path index, or -1."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods};

PyMODINIT_FUNC PyInit__speedups(void)
{
    crc_init();
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "NEED_DIR", NEED_DIR) < 0 ||
        PyModule_AddIntConstant(m, "NEED_GENERAL", NEED_GENERAL) < 0 ||
        PyModule_AddIntConstant(m, "STAT_FAILED", STAT_FAILED) < 0 ||
        PyModule_AddIntConstant(m, "NOT_READ", NOT_READ) < 0 || PyModule_AddIntConstant(m, "NOT_REGULAR", NOT_REGULAR) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
