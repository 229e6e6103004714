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

static PyMethodDef methods[] = {
    {"real_quotes", real_quotes, METH_VARARGS, "Offsets of the unescaped quotes of a block."},
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
