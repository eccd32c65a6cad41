/*
 * _xrail.c - the CPython extension behind the `xrail` package: one Python
 * type per handle of the C API (Engine, Region, Peer, Transfer), errors as
 * exceptions, and nothing on the data path: a transfer is planned and posted
 * by the engine, and Python only waits for it, with the GIL released.
 *
 * Lifetimes. Every Region, Peer and Transfer holds a strong reference to its
 * Engine, so an engine outlives its handles unless it is closed explicitly;
 * after close() the handles are inert (their C objects went with the
 * engine). Buffers stay alive while the engine may touch them: a Region
 * holds its memoryview (or CUDA object), and a Transfer holds those of its
 * local buffers. A Transfer or Region dropped while the engine still uses it
 * is parked on the engine (`orphans`) and finished later, never freed under
 * the engine's feet.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "xrail.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ---- */

static PyObject *Error;
static PyObject *errors[32]; /* by -code */

static const struct {
    int code;
    const char *name;
    PyObject **base;
} error_classes[] = {
    {XR_EINVAL, "InvalidArgument", &PyExc_ValueError},
    {XR_ENOMEM, "OutOfMemory", &PyExc_MemoryError},
    {XR_ETOOSMALL, "TooSmall", NULL},
    {XR_EBADMD, "BadMetadata", NULL},
    {XR_EVERSION, "VersionMismatch", NULL},
    {XR_ENOTREG, "NotRegistered", NULL},
    {XR_ERANGE, "OutOfRange", NULL},
    {XR_EACCESS, "AccessDenied", NULL},
    {XR_EEXIST, "AlreadyExists", NULL},
    {XR_ENOENT, "NotFound", NULL},
    {XR_EBUSY, "Busy", NULL},
    {XR_EAGAIN, "Again", NULL},
    {XR_EINPROGRESS, "InProgress", NULL},
    {XR_ETIMEDOUT, "Timeout", &PyExc_TimeoutError},
    {XR_EFABRIC, "FabricError", NULL},
    {XR_EIO, "TransferFailed", NULL},
    {XR_ENORAIL, "NoRail", NULL},
    {XR_ENOTSUP, "NotSupported", NULL},
    {XR_ECANCELED, "Canceled", NULL},
    {XR_ESCRIPT, "ScriptError", NULL},
    {XR_EPEER, "PeerLost", NULL},
    {XR_EDIR, "DirectoryError", NULL},
    {XR_EGONE, "PeerGone", NULL},
};

/* Raise the class of `rc` with `msg` (the engine's detail when NULL). */
static PyObject *raise_msg(int rc, const char *msg)
{
    PyObject *cls = rc < 0 && -rc < 32 && errors[-rc] ? errors[-rc] : Error;
    const char *text = msg ? msg : xr_engine_last_error(NULL);
    PyObject *exc = PyObject_CallFunction(cls, "s", text && *text ? text : xr_strerror(rc));
    if (!exc)
        return NULL;
    PyObject *code = PyLong_FromLong(rc);
    PyObject_SetAttrString(exc, "code", code);
    Py_XDECREF(code);
    PyObject *name = PyUnicode_FromString(xr_err_name(rc));
    PyObject_SetAttrString(exc, "name", name);
    Py_XDECREF(name);
    PyErr_SetObject(cls, exc);
    Py_DECREF(exc);
    return NULL;
}

static PyObject *raise_xr(int rc)
{
    return raise_msg(rc, NULL);
}

/* ---- the engine ---- */

typedef struct {
    PyObject_HEAD
    xr_engine *e;
    PyObject *orphans;  /* list of (capsule, keep): handles to finish later */
} EngineObject;

typedef struct {
    PyObject_HEAD
    EngineObject *eng;
    xr_region *r;
    PyObject *keep;     /* memoryview or the CUDA object: the memory stays */
    uint64_t addr;
    size_t len;
    int kind, device;
} RegionObject;

typedef struct {
    PyObject_HEAD
    EngineObject *eng;
    xr_peer *p;
    int from_dir;   /* from Engine.lookup: the directory owns it, never unloaded here */
} PeerObject;

typedef struct {
    PyObject_HEAD
    EngineObject *eng;
    PeerObject *peer;
    xr_xfer *x;
    PyObject *keep;     /* list of the local buffers' memoryviews/objects */
} TransferObject;

typedef struct {
    PyObject_HEAD
    EngineObject *eng;
    PeerObject *peer;
    xr_group *g;
} GroupObject;

static PyTypeObject EngineType, RegionType, PeerType, TransferType, GroupType;

static int engine_open(EngineObject *eng)
{
    if (eng->e)
        return 1;
    PyErr_SetString(Error, "the engine is closed");
    return 0;
}

/* Finish parked handles whose engine work is over. */
static void reap(EngineObject *eng)
{
    if (!eng->e || !eng->orphans)
        return;
    for (Py_ssize_t i = PyList_GET_SIZE(eng->orphans); i-- > 0;) {
        PyObject *t = PyList_GET_ITEM(eng->orphans, i);
        PyObject *cap = PyTuple_GET_ITEM(t, 0);
        bool done = false;
        if (PyCapsule_IsValid(cap, "xr_xfer")) {
            xr_xfer *x = PyCapsule_GetPointer(cap, "xr_xfer");
            if (xr_xfer_status(x) != XR_EINPROGRESS) {
                xr_xfer_release(x);
                done = true;
            }
        } else if (PyCapsule_IsValid(cap, "xr_region")) {
            done = xr_mem_deregister(PyCapsule_GetPointer(cap, "xr_region")) == 0;
        }
        if (done)
            PySequence_DelItem(eng->orphans, i);
    }
}

static void park(EngineObject *eng, void *h, const char *kind, PyObject *keep)
{
    PyObject *cap = PyCapsule_New(h, kind, NULL);
    PyObject *t = cap ? PyTuple_Pack(2, cap, keep ? keep : Py_None) : NULL;
    if (t)
        PyList_Append(eng->orphans, t);
    Py_XDECREF(t);
    Py_XDECREF(cap);
    PyErr_Clear();
}

static int opt_str(PyObject *d, const char *key, const char **out)
{
    PyObject *v = PyDict_GetItemString(d, key);
    if (!v || v == Py_None)
        return 0;
    if (!PyUnicode_Check(v)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str", key);
        return -1;
    }
    *out = PyUnicode_AsUTF8(v);
    return *out ? 0 : -1;
}

static int opt_u64(PyObject *d, const char *key, unsigned long long *out)
{
    PyObject *v = PyDict_GetItemString(d, key);
    if (!v || v == Py_None)
        return 0;
    unsigned long long n = PyLong_AsUnsignedLongLong(v);
    if (n == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = n;
    return 0;
}

static int check_keys(PyObject *d, const char *what, const char *const keys[])
{
    PyObject *k;
    Py_ssize_t pos = 0;
    while (PyDict_Next(d, &pos, &k, NULL)) {
        const char *s = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k) : NULL;
        bool ok = false;
        for (size_t i = 0; s && keys[i] && !ok; i++)
            ok = !strcmp(s, keys[i]);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "%s: unknown setting %R", what, k);
            return -1;
        }
    }
    return 0;
}

static const char *const engine_keys[] = {
    "provider", "domain", "rails", "max_rails", "stripe_min", "chunk_size", "rail_depth",
    "progress_thread", "progress_threads", "progress_sleep_us", "log_level", "ignore_env", "policy", "layout", "script_path",
    "script_mem", "mr_cache", "stage", "connect_on_load", "ipc_fence", NULL};

static int engine_init(EngineObject *self, PyObject *args, PyObject *kw)
{
    const char *name = NULL, *config = NULL;
    if (!PyArg_ParseTuple(args, "s|z:Engine", &name, &config))
        return -1;
    if (self->e) {
        PyErr_SetString(Error, "Engine.__init__ called twice");
        return -1;
    }
    PyObject *o = kw ? kw : PyDict_New();
    if (!o)
        return -1;
    if (o == kw)
        Py_INCREF(o);
    xr_engine_opts opts;
    xr_engine_opts_init(&opts);
    opts.name = name;
    opts.config = config;
    xr_rail_spec specs[XR_MAX_RAILS];
    memset(specs, 0, sizeof specs);
    unsigned long long v;
    int rc = check_keys(o, "Engine", engine_keys);
#define U64(key, field)                                                                     \
    v = (unsigned long long)opts.field;                                                     \
    if (!rc && !(rc = opt_u64(o, key, &v)))                                                 \
        opts.field = (__typeof__(opts.field))v;
    U64("max_rails", max_rails)
    U64("stripe_min", stripe_min)
    U64("chunk_size", chunk_size)
    U64("rail_depth", rail_depth)
    U64("script_mem", script_mem)
    U64("progress_sleep_us", progress_sleep_us)
    U64("progress_threads", progress_threads)
#undef U64
    if (!rc)
        rc = opt_str(o, "provider", &opts.provider);
    if (!rc)
        rc = opt_str(o, "domain", &opts.domain);
    if (!rc)
        rc = opt_str(o, "policy", &opts.policy);
    if (!rc)
        rc = opt_str(o, "layout", &opts.layout);
    if (!rc)
        rc = opt_str(o, "script_path", &opts.script_path);
    PyObject *b;
    if (!rc && (b = PyDict_GetItemString(o, "progress_thread")))
        opts.progress_thread = PyObject_IsTrue(b);
    if (!rc && (b = PyDict_GetItemString(o, "ignore_env")))
        opts.ignore_env = PyObject_IsTrue(b);
    if (!rc && (b = PyDict_GetItemString(o, "connect_on_load")))
        opts.connect_on_load = PyObject_IsTrue(b);
    if (!rc && (b = PyDict_GetItemString(o, "ipc_fence")))
        opts.ipc_fence = PyObject_IsTrue(b);
    if (!rc && (b = PyDict_GetItemString(o, "log_level")))
        opts.log_level = (int)PyLong_AsLong(b);
    /* rails: a count on provider/domain, or a list of dicts. */
    PyObject *rails = rc ? NULL : PyDict_GetItemString(o, "rails");
    if (rails && PyLong_Check(rails)) {
        specs[0] = (xr_rail_spec){.provider = opts.provider, .domain = opts.domain,
                                  .count = (unsigned)PyLong_AsUnsignedLong(rails)};
        opts.rails = specs;
        opts.n_rail_specs = 1;
    } else if (rails && rails != Py_None) {
        static const char *const rail_keys[] = {"provider", "domain", "src_addr", "count",
                                                "speed", "host_only", NULL};
        PyObject *seq = PySequence_Fast(rails, "rails must be an int or a list of dicts");
        Py_ssize_t n = seq ? PySequence_Fast_GET_SIZE(seq) : 0;
        if (!seq || n > XR_MAX_RAILS) {
            if (seq)
                PyErr_Format(PyExc_ValueError, "rails: %zd entries, at most %d", n, XR_MAX_RAILS);
            rc = -1;
        }
        for (Py_ssize_t i = 0; !rc && i < n; i++) {
            PyObject *d = PySequence_Fast_GET_ITEM(seq, i);
            if (!PyDict_Check(d) || check_keys(d, "rails entry", rail_keys)) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_TypeError, "rails: each entry is a dict");
                rc = -1;
                break;
            }
            unsigned long long count = 1, speed = 0;
            rc = opt_str(d, "provider", &specs[i].provider) || opt_str(d, "domain", &specs[i].domain) ||
                 opt_str(d, "src_addr", &specs[i].src_addr) || opt_u64(d, "count", &count) ||
                 opt_u64(d, "speed", &speed);
            specs[i].count = (unsigned)count;
            specs[i].speed_mbps = speed;
            PyObject *h = PyDict_GetItemString(d, "host_only");
            specs[i].host_only = h && PyObject_IsTrue(h);
        }
        opts.rails = specs;
        opts.n_rail_specs = (unsigned)n;
        Py_XDECREF(seq); /* strings above belong to the dicts, which `o` keeps */
    }
    PyObject *d;
    if (!rc && (d = PyDict_GetItemString(o, "mr_cache"))) {
        static const char *const keys[] = {"enabled", "max_entries", "max_bytes", NULL};
        unsigned long long me = opts.mr_cache.max_entries, mb = opts.mr_cache.max_bytes;
        rc = !PyDict_Check(d) || check_keys(d, "mr_cache", keys) ||
             opt_u64(d, "max_entries", &me) || opt_u64(d, "max_bytes", &mb);
        PyObject *en = rc ? NULL : PyDict_GetItemString(d, "enabled");
        if (en)
            opts.mr_cache.enabled = PyObject_IsTrue(en);
        opts.mr_cache.max_entries = me;
        opts.mr_cache.max_bytes = mb;
    }
    if (!rc && (d = PyDict_GetItemString(o, "stage"))) {
        static const char *const keys[] = {"chunk", "slots", "rx_slots", "host", NULL};
        unsigned long long ch = opts.stage.chunk, sl = opts.stage.slots, rx = opts.stage.rx_slots;
        rc = !PyDict_Check(d) || check_keys(d, "stage", keys) || opt_u64(d, "chunk", &ch) ||
             opt_u64(d, "slots", &sl) || opt_u64(d, "rx_slots", &rx);
        PyObject *h = rc ? NULL : PyDict_GetItemString(d, "host");
        if (h)
            opts.stage.host = PyObject_IsTrue(h);
        opts.stage.chunk = ch;
        opts.stage.slots = (unsigned)sl;
        opts.stage.rx_slots = (unsigned)rx;
    }
    if (rc) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "Engine: invalid settings");
        Py_DECREF(o);
        return -1;
    }
    xr_engine *e = NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = xr_engine_create(&opts, &e);
    Py_END_ALLOW_THREADS
    Py_DECREF(o);
    if (rc) {
        raise_xr(rc);
        return -1;
    }
    self->e = e;
    self->orphans = PyList_New(0);
    return self->orphans ? 0 : -1;
}

static PyObject *engine_close(EngineObject *self, PyObject *unused)
{
    (void)unused;
    if (self->e) {
        xr_engine *e = self->e;
        self->e = NULL; /* handles see a closed engine from now on */
        Py_BEGIN_ALLOW_THREADS
        xr_engine_destroy(e);
        Py_END_ALLOW_THREADS
    }
    Py_CLEAR(self->orphans); /* the engine is gone: nothing touches their memory */
    Py_RETURN_NONE;
}

static void engine_dealloc(EngineObject *self)
{
    PyObject_GC_UnTrack(self);
    PyObject *r = engine_close(self, NULL);
    Py_XDECREF(r);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int engine_traverse(EngineObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->orphans);
    return 0;
}

static PyObject *engine_enter(EngineObject *self, PyObject *unused)
{
    (void)unused;
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *engine_exit(EngineObject *self, PyObject *args)
{
    (void)args;
    PyObject *r = engine_close(self, NULL);
    Py_XDECREF(r);
    Py_RETURN_FALSE;
}

static PyObject *engine_get_name(EngineObject *self, void *c)
{
    (void)c;
    if (!engine_open(self))
        return NULL;
    return PyUnicode_FromString(xr_engine_name(self->e));
}

static PyObject *engine_get_closed(EngineObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(self->e == NULL);
}

static PyObject *rail_dict(const xr_rail_info *ri)
{
    const xr_rail_counters *k = &ri->counters;
    static const char *const states[] = {"up", "suspect", "down", "disabled"};
    return Py_BuildValue(
        "{s:I,s:s,s:s,s:s,s:s,s:K,s:i,s:i,s:s,s:O,s:s,s:s,s:s,s:K,s:K,s:O,s:O,s:O,s:I,"
        "s:{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K}}",
        "index", ri->index, "provider", ri->provider, "domain", ri->domain, "fabric", ri->fabric,
        "address", ri->address, "speed_mbps", (unsigned long long)ri->speed_mbps, "numa_node",
        ri->numa_node, "gpu", ri->gpu, "pci", ri->pci, "up", ri->up ? Py_True : Py_False,
        "state", ri->state >= 0 && ri->state < 4 ? states[ri->state] : "?", "reason", ri->reason,
        "last_error", ri->last_error,
        "max_msg_size", (unsigned long long)ri->max_msg_size, "mr_mode",
        (unsigned long long)ri->mr_mode, "delivery_complete",
        ri->delivery_complete ? Py_True : Py_False, "hmem", ri->hmem ? Py_True : Py_False,
        "host_only", ri->host_only ? Py_True : Py_False, "stage_slots", ri->stage_slots,
        "counters", "tx_bytes",
        (unsigned long long)k->tx_bytes, "chunks", (unsigned long long)k->chunks, "errors",
        (unsigned long long)k->errors, "eagain", (unsigned long long)k->eagain, "notif_tx",
        (unsigned long long)k->notif_tx, "notif_rx", (unsigned long long)k->notif_rx, "staged",
        (unsigned long long)k->staged, "staged_served", (unsigned long long)k->staged_served,
        "stalls", (unsigned long long)k->stalls, "resets", (unsigned long long)k->resets,
        "failovers", (unsigned long long)k->failovers, "probes", (unsigned long long)k->probes,
        "abandoned", (unsigned long long)k->abandoned);
}

static PyObject *engine_rail_info(EngineObject *self, PyObject *unused)
{
    (void)unused;
    if (!engine_open(self))
        return NULL;
    int n = xr_rail_count(self->e);
    PyObject *list = PyList_New(0);
    for (int i = 0; list && i < n; i++) {
        xr_rail_info ri;
        int rc = xr_rail_info_get(self->e, (unsigned)i, &ri);
        PyObject *d = rc ? raise_xr(rc) : rail_dict(&ri);
        if (!d || PyList_Append(list, d)) {
            Py_XDECREF(d);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(d);
    }
    return list;
}

static PyObject *engine_set_rail_state(EngineObject *self, PyObject *args)
{
    unsigned index;
    int up;
    if (!PyArg_ParseTuple(args, "Ip", &index, &up) || !engine_open(self))
        return NULL;
    int rc = xr_rail_set_state(self->e, index, up);
    return rc ? raise_xr(rc) : (Py_INCREF(Py_None), Py_None);
}

/* Memory of an object: (address, bytes, kind, device), and what keeps it. */
typedef struct mem {
    uint64_t addr;
    size_t len;
    int kind, device;
    PyObject *keep;     /* new reference */
} mem;

/* __cuda_array_interface__ (torch, cupy on a GPU) or __array_interface__
 * (numpy and what mimics it on the host): 1 if obj has `attr` and it was
 * read into m, 0 if it has none, -1 with an exception. */
static int array_interface(PyObject *obj, const char *attr, int kind, bool writable, mem *m)
{
    PyObject *ai = PyObject_GetAttrString(obj, attr);
    if (!ai) {
        PyErr_Clear();
        return 0;
    }
    int ok = -1;
    PyObject *data = PyDict_Check(ai) ? PyDict_GetItemString(ai, "data") : NULL;
    PyObject *shape = PyDict_Check(ai) ? PyDict_GetItemString(ai, "shape") : NULL;
    PyObject *typestr = PyDict_Check(ai) ? PyDict_GetItemString(ai, "typestr") : NULL;
    PyObject *strides = PyDict_Check(ai) ? PyDict_GetItemString(ai, "strides") : NULL;
    if (!data || !PyTuple_Check(data) || PyTuple_GET_SIZE(data) < 1 || !shape ||
        !PyTuple_Check(shape) || !typestr || !PyUnicode_Check(typestr)) {
        PyErr_Format(PyExc_TypeError, "%s lacks data, shape or typestr", attr);
    } else if (strides && strides != Py_None) {
        PyErr_Format(PyExc_ValueError, "%s: only C-contiguous arrays (strides None) can be "
                                       "registered", attr);
    } else if (writable && PyTuple_GET_SIZE(data) > 1 && PyObject_IsTrue(PyTuple_GET_ITEM(data, 1))) {
        PyErr_SetString(PyExc_ValueError, "the buffer is read-only, and this use writes it");
    } else {
        const char *ts = PyUnicode_AsUTF8(typestr);
        size_t item = ts && strlen(ts) > 2 ? (size_t)atoi(ts + 2) : 0;
        size_t n = item;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(shape); i++)
            n *= PyLong_AsSize_t(PyTuple_GET_ITEM(shape, i));
        m->addr = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(data, 0));
        m->len = n;
        if (PyErr_Occurred() || !item) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "%s: typestr %R", attr, typestr);
            Py_DECREF(ai);
            return -1;
        }
        m->kind = kind;
        m->device = kind == XR_MEM_CUDA ? 0 : -1;
        PyObject *dev = kind == XR_MEM_CUDA ? PyObject_GetAttrString(obj, "device") : NULL;
        if (dev) {
            /* torch: device.index; cupy: device.id */
            PyObject *idx = PyObject_GetAttrString(dev, "index");
            if (!idx) {
                PyErr_Clear();
                idx = PyObject_GetAttrString(dev, "id");
            }
            if (idx && PyLong_Check(idx))
                m->device = (int)PyLong_AsLong(idx);
            Py_XDECREF(idx);
            Py_DECREF(dev);
        }
        PyErr_Clear(); /* no device attribute: device 0 */
        Py_INCREF(obj);
        m->keep = obj;
        ok = 1;
    }
    Py_DECREF(ai);
    return ok;
}

/* A torch tensor in host memory: no buffer protocol and no
 * __array_interface__, but data_ptr(), numel(), element_size(). */
static int torch_host(PyObject *obj, mem *m)
{
    if (!PyObject_HasAttrString(obj, "data_ptr") || !PyObject_HasAttrString(obj, "element_size") ||
        !PyObject_HasAttrString(obj, "is_contiguous"))
        return 0;
    PyObject *c = PyObject_CallMethod(obj, "is_contiguous", NULL);
    if (!c)
        return -1;
    int contiguous = PyObject_IsTrue(c);
    Py_DECREF(c);
    if (contiguous != 1) {
        if (contiguous == 0)
            PyErr_SetString(PyExc_ValueError, "the tensor is not contiguous (call .contiguous())");
        return -1;
    }
    PyObject *p = PyObject_CallMethod(obj, "data_ptr", NULL);
    PyObject *n = p ? PyObject_CallMethod(obj, "numel", NULL) : NULL;
    PyObject *es = n ? PyObject_CallMethod(obj, "element_size", NULL) : NULL;
    int ok = -1;
    if (es) {
        m->addr = PyLong_AsUnsignedLongLong(p);
        m->len = PyLong_AsSize_t(n) * PyLong_AsSize_t(es);
        if (!PyErr_Occurred()) {
            m->kind = XR_MEM_HOST;
            m->device = -1;
            Py_INCREF(obj);
            m->keep = obj;
            ok = 1;
        }
    }
    Py_XDECREF(p);
    Py_XDECREF(n);
    Py_XDECREF(es);
    return ok;
}

/* An (addr, nbytes, kind, device) tuple, a CUDA array, a buffer, or host
 * memory that only says where it is (__array_interface__, a CPU torch
 * tensor). */
static int mem_of(PyObject *obj, bool writable, mem *m)
{
    memset(m, 0, sizeof *m);
    if (PyTuple_Check(obj) && PyTuple_GET_SIZE(obj) == 4) {
        const char *kind;
        unsigned long long a, n;
        if (!PyArg_ParseTuple(obj, "KKsi", &a, &n, &kind, &m->device))
            return -1;
        if (strcmp(kind, "host") && strcmp(kind, "cuda")) {
            PyErr_Format(PyExc_ValueError, "memory kind '%s': 'host' or 'cuda'", kind);
            return -1;
        }
        m->addr = a;
        m->len = n;
        m->kind = strcmp(kind, "cuda") ? XR_MEM_HOST : XR_MEM_CUDA;
        return 0;
    }
    int c = array_interface(obj, "__cuda_array_interface__", XR_MEM_CUDA, writable, m);
    if (!c && !PyObject_CheckBuffer(obj)) {
        c = array_interface(obj, "__array_interface__", XR_MEM_HOST, writable, m);
        if (!c)
            c = torch_host(obj, m);
    }
    if (c)
        return c < 0 ? -1 : 0;
    PyObject *mv = PyMemoryView_FromObject(obj);
    if (!mv)
        return -1;
    Py_buffer *v = PyMemoryView_GET_BUFFER(mv);
    if (!PyBuffer_IsContiguous(v, 'C') || (writable && v->readonly)) {
        PyErr_SetString(PyExc_ValueError, writable && v->readonly
                                              ? "the buffer is read-only, and this use writes it"
                                              : "the buffer is not C-contiguous");
        Py_DECREF(mv);
        return -1;
    }
    m->addr = (uintptr_t)v->buf;
    m->len = (size_t)v->len;
    m->kind = XR_MEM_HOST;
    m->device = -1;
    m->keep = mv;
    return 0;
}

static unsigned parse_access(const char *s)
{
    if (!strcmp(s, "rw"))
        return XR_ACCESS_RW;
    if (!strcmp(s, "r"))
        return XR_ACCESS_READ;
    if (!strcmp(s, "w"))
        return XR_ACCESS_WRITE;
    if (!strcmp(s, "none") || !*s)
        return XR_ACCESS_NONE;
    return 99;
}

static PyObject *engine_register(EngineObject *self, PyObject *args, PyObject *kw)
{
    static char *kwl[] = {"obj", "access", NULL};
    PyObject *obj;
    const char *access = "rw";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|s:register", kwl, &obj, &access) ||
        !engine_open(self))
        return NULL;
    unsigned acc = parse_access(access);
    if (acc == 99)
        return PyErr_Format(PyExc_ValueError, "access '%s': 'rw', 'r', 'w' or 'none'", access);
    mem m;
    if (mem_of(obj, acc & XR_ACCESS_WRITE, &m))
        return NULL;
    xr_region *r = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = xr_mem_register(self->e, (void *)(uintptr_t)m.addr, m.len, (xr_mem_kind)m.kind,
                         m.device, acc, &r);
    Py_END_ALLOW_THREADS
    if (rc) {
        Py_XDECREF(m.keep);
        return raise_xr(rc);
    }
    RegionObject *g = PyObject_New(RegionObject, &RegionType);
    if (!g) {
        xr_mem_deregister(r);
        Py_XDECREF(m.keep);
        return NULL;
    }
    Py_INCREF(self);
    g->eng = self;
    g->r = r;
    g->keep = m.keep;
    g->addr = m.addr;
    g->len = m.len;
    g->kind = m.kind;
    g->device = m.device;
    return (PyObject *)g;
}

static PyObject *engine_metadata(EngineObject *self, PyObject *unused)
{
    (void)unused;
    if (!engine_open(self))
        return NULL;
    size_t len = 0;
    int rc = xr_metadata_get(self->e, NULL, &len);
    if (rc != XR_ETOOSMALL)
        return raise_xr(rc ? rc : XR_EINVAL);
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    if (!b)
        return NULL;
    rc = xr_metadata_get(self->e, PyBytes_AS_STRING(b), &len);
    if (rc) {
        Py_DECREF(b);
        return raise_xr(rc);
    }
    return b;
}

static PyObject *engine_set_field(EngineObject *self, PyObject *args)
{
    const char *name;
    Py_buffer v;
    if (!PyArg_ParseTuple(args, "sy*:set_field", &name, &v))
        return NULL;
    int rc = engine_open(self) ? xr_metadata_set_field(self->e, name, v.buf, (size_t)v.len) : 1;
    PyBuffer_Release(&v);
    if (rc == 1)
        return NULL;
    return rc ? raise_xr(rc) : (Py_INCREF(Py_None), Py_None);
}

static PyObject *engine_load_peer(EngineObject *self, PyObject *args)
{
    Py_buffer md;
    if (!PyArg_ParseTuple(args, "y*:load_peer", &md))
        return NULL;
    if (!engine_open(self)) {
        PyBuffer_Release(&md);
        return NULL;
    }
    xr_peer *p = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = xr_peer_load(self->e, md.buf, (size_t)md.len, &p);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&md);
    if (rc)
        return raise_xr(rc);
    PeerObject *po = PyObject_New(PeerObject, &PeerType);
    if (!po) {
        xr_peer_unload(p);
        return NULL;
    }
    Py_INCREF(self);
    po->eng = self;
    po->p = p;
    po->from_dir = 0;
    return (PyObject *)po;
}

static PyObject *engine_open_directory(EngineObject *self, PyObject *args, PyObject *kw)
{
    static char *kwl[] = {"endpoints", "prefix", "ttl", "request_timeout", "user", "password",
                          "ca_file", "cert_file", "key_file", NULL};
    xr_dir_opts o;
    xr_dir_opts_init(&o);
    double ttl = 10, req = 2;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|zddzzzzz:open_directory", kwl, &o.endpoints,
                                     &o.prefix, &ttl, &req, &o.user, &o.password, &o.ca_file,
                                     &o.cert_file, &o.key_file))
        return NULL;
    if (!engine_open(self))
        return NULL;
    if (!o.prefix)
        o.prefix = "/xrail/";
    o.ttl_ms = ttl <= 0 ? 0 : ttl > 1e6 ? 1000000000u : (unsigned)(ttl * 1000);
    o.request_ms = req <= 0 ? 0 : req > 1e6 ? 1000000000u : (unsigned)(req * 1000);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = xr_dir_open(self->e, &o);
    Py_END_ALLOW_THREADS
    if (rc)
        return raise_xr(rc);
    Py_RETURN_NONE;
}

static PyObject *engine_close_directory(EngineObject *self, PyObject *unused)
{
    (void)unused;
    if (!engine_open(self))
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = xr_dir_close(self->e);
    Py_END_ALLOW_THREADS
    if (rc)
        return raise_xr(rc);
    Py_RETURN_NONE;
}

static PyObject *engine_lookup(EngineObject *self, PyObject *args, PyObject *kw)
{
    static char *kwl[] = {"name", "timeout", NULL};
    const char *name;
    double timeout = 30;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|d:lookup", kwl, &name, &timeout))
        return NULL;
    if (!engine_open(self))
        return NULL;
    int ms = timeout <= 0 ? 0 : timeout > 2e6 ? 2000000000 : (int)(timeout * 1000);
    xr_peer *p = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = xr_peer_lookup(self->e, name, ms, &p);
    Py_END_ALLOW_THREADS
    if (rc)
        return raise_xr(rc);
    PeerObject *po = PyObject_New(PeerObject, &PeerType);
    if (!po)
        return NULL;
    Py_INCREF(self);
    po->eng = self;
    po->p = p;
    po->from_dir = 1;
    return (PyObject *)po;
}

static PyObject *engine_directory_events(EngineObject *self, PyObject *unused)
{
    (void)unused;
    if (!engine_open(self))
        return NULL;
    static const char *const kinds[] = {"?", "join", "update", "leave"};
    PyObject *out = PyList_New(0);
    xr_dir_event ev;
    int rc;
    while (out && (rc = xr_dir_event_get(self->e, &ev)) == 0) {
        PyObject *t = Py_BuildValue("(ssL)", kinds[ev.kind <= 3 ? ev.kind : 0], ev.name,
                                    (long long)ev.revision);
        if (!t || PyList_Append(out, t)) {
            Py_XDECREF(t);
            Py_CLEAR(out);
            return NULL;
        }
        Py_DECREF(t);
    }
    if (out && rc != XR_EAGAIN) {
        Py_DECREF(out);
        return raise_xr(rc);
    }
    return out;
}

/* Descriptors: each (int address or buffer, length), or a buffer alone.
 * Buffers go to `keep` so that they live as long as the transfer. */
static int parse_iovs(PyObject *list, bool local, bool writable, xr_iov **out, Py_ssize_t *n,
                      PyObject *keep)
{
    PyObject *seq = PySequence_Fast(list, local ? "local must be a list of descriptors"
                                                : "remote must be a list of (addr, len)");
    if (!seq)
        return -1;
    *n = PySequence_Fast_GET_SIZE(seq);
    *out = PyMem_Calloc(*n ? (size_t)*n : 1, sizeof **out);
    if (!*out) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < *n; i++) {
        PyObject *it = PySequence_Fast_GET_ITEM(seq, i), *x = it, *len = NULL;
        if (PyTuple_Check(it) && PyTuple_GET_SIZE(it) == 2) {
            x = PyTuple_GET_ITEM(it, 0);
            len = PyTuple_GET_ITEM(it, 1);
        }
        if (PyLong_Check(x)) {
            if (!len) {
                PyErr_Format(PyExc_TypeError, "descriptor %zd: an address needs a length", i);
                goto fail;
            }
            (*out)[i].addr = PyLong_AsUnsignedLongLong(x);
        } else if (!local) {
            PyErr_Format(PyExc_TypeError, "remote descriptor %zd: (address, length) of the "
                                          "peer's memory", i);
            goto fail;
        } else {
            mem m;
            if (mem_of(x, writable, &m))
                goto fail;
            (*out)[i].addr = m.addr;
            (*out)[i].len = m.len;
            int rc = m.keep ? PyList_Append(keep, m.keep) : 0;
            Py_XDECREF(m.keep);
            if (rc)
                goto fail;
        }
        if (len) {
            size_t l = PyLong_AsSize_t(len);
            if (PyErr_Occurred())
                goto fail;
            if (!PyLong_Check(x) && l > (*out)[i].len) {
                PyErr_Format(PyExc_ValueError, "descriptor %zd: length %zu exceeds the buffer's "
                                               "%zu bytes", i, l, (*out)[i].len);
                goto fail;
            }
            (*out)[i].len = l;
        }
        if (PyErr_Occurred())
            goto fail;
    }
    Py_DECREF(seq);
    return 0;
fail:
    Py_DECREF(seq);
    PyMem_Free(*out);
    *out = NULL;
    return -1;
}

static PyObject *transfer(EngineObject *self, PyObject *args, PyObject *kw, xr_op op)
{
    static char *kwl[] = {"peer", "local", "remote", "notif", "group", NULL};
    PeerObject *peer;
    PyObject *local, *remote;
    Py_buffer notif = {0};
    PyObject *group = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!OO|z*O", kwl, &PeerType, &peer, &local, &remote,
                                     &notif, &group) ||
        !engine_open(self))
        goto out_buf;
    xr_group *g = NULL;
    if (group != Py_None) {
        if (!PyObject_TypeCheck(group, &GroupType) || !((GroupObject *)group)->g ||
            ((GroupObject *)group)->eng != self) {
            PyErr_SetString(PyExc_ValueError, "group: a Group of this engine, not released");
            goto out_buf;
        }
        if (notif.obj) {
            PyErr_SetString(PyExc_ValueError, "notif: a group member's own notification is "
                                              "never sent; give it to the group");
            goto out_buf;
        }
        g = ((GroupObject *)group)->g;
    }
    if (peer->eng != self || !peer->p) {
        PyErr_SetString(PyExc_ValueError, "the peer belongs to another engine, or was unloaded");
        goto out_buf;
    }
    reap(self);
    PyObject *keep = PyList_New(0);
    xr_iov *li = NULL, *ri = NULL;
    Py_ssize_t nl = 0, nr = 0;
    if (!keep || parse_iovs(local, true, op == XR_OP_READ, &li, &nl, keep) ||
        parse_iovs(remote, false, false, &ri, &nr, keep))
        goto fail;
    if (nl != nr) {
        PyErr_Format(PyExc_ValueError, "%zd local descriptors, %zd remote", nl, nr);
        goto fail;
    }
    xr_xfer *x = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = xr_xfer_create(self->e, peer->p, op, li, ri, (size_t)nl, notif.buf, (size_t)notif.len,
                        &x);
    if (!rc) {
        rc = g ? xr_group_add(g, x) : xr_xfer_post(x);
        if (rc) {
            xr_xfer_release(x);
            x = NULL;
        }
    }
    Py_END_ALLOW_THREADS
    if (rc) {
        raise_xr(rc);
        goto fail;
    }
    TransferObject *t = PyObject_New(TransferObject, &TransferType);
    if (!t) {
        xr_xfer_wait(x, -1);
        xr_xfer_release(x);
        goto fail;
    }
    Py_INCREF(self);
    Py_INCREF(peer);
    t->eng = self;
    t->peer = peer;
    t->x = x;
    t->keep = keep;
    PyMem_Free(li);
    PyMem_Free(ri);
    if (notif.obj)
        PyBuffer_Release(&notif);
    return (PyObject *)t;
fail:
    Py_XDECREF(keep);
    PyMem_Free(li);
    PyMem_Free(ri);
out_buf:
    if (notif.obj)
        PyBuffer_Release(&notif);
    return NULL;
}

static PyObject *engine_write(EngineObject *self, PyObject *args, PyObject *kw)
{
    return transfer(self, args, kw, XR_OP_WRITE);
}

static PyObject *engine_read(EngineObject *self, PyObject *args, PyObject *kw)
{
    return transfer(self, args, kw, XR_OP_READ);
}

/* _notif_get(timeout_ms=0) -> (name, bytes) or None: 0 takes what has
 * arrived (driving progress once); otherwise xr_notif_wait, with the GIL
 * released, in slices short enough for Ctrl-C to be seen (< 0: forever). */
static PyObject *engine_notif_get(EngineObject *self, PyObject *args)
{
    long long timeout_ms = 0;
    if (!PyArg_ParseTuple(args, "|L:_notif_get", &timeout_ms) || !engine_open(self))
        return NULL;
    char name[256];
    char small[4096];
    size_t len = sizeof small;
    int rc = xr_notif_get(self->e, name, sizeof name, small, &len);
    if (rc == XR_EAGAIN && timeout_ms == 0) {
        /* Nothing yet: drive progress once, so polling alone moves things. */
        Py_BEGIN_ALLOW_THREADS
        xr_progress(self->e);
        Py_END_ALLOW_THREADS
        len = sizeof small;
        rc = xr_notif_get(self->e, name, sizeof name, small, &len);
    }
    while (rc == XR_EAGAIN && timeout_ms != 0) {
        int slice = timeout_ms < 0 || timeout_ms > 200 ? 200 : (int)timeout_ms;
        if (timeout_ms > 0)
            timeout_ms -= slice;
        len = sizeof small;
        Py_BEGIN_ALLOW_THREADS
        rc = xr_notif_wait(self->e, slice, name, sizeof name, small, &len);
        Py_END_ALLOW_THREADS
        if (rc == XR_ETIMEDOUT)
            rc = XR_EAGAIN;
        if (rc == XR_EAGAIN && PyErr_CheckSignals())
            return NULL;
        if (!self->e) /* closed by another thread meanwhile */
            return raise_msg(XR_EINVAL, "the engine was closed");
    }
    if (rc == XR_EAGAIN)
        Py_RETURN_NONE;
    if (rc == XR_ETOOSMALL) {
        PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
        if (!b)
            return NULL;
        rc = xr_notif_get(self->e, name, sizeof name, PyBytes_AS_STRING(b), &len);
        if (rc) {
            Py_DECREF(b);
            return raise_xr(rc);
        }
        PyObject *r = Py_BuildValue("(sO)", name, b);
        Py_DECREF(b);
        return r;
    }
    if (rc)
        return raise_xr(rc);
    return Py_BuildValue("(sy#)", name, small, (Py_ssize_t)len);
}

static PyObject *engine_send_notif(EngineObject *self, PyObject *args)
{
    PeerObject *peer;
    Py_buffer msg;
    if (!PyArg_ParseTuple(args, "O!y*:send_notif", &PeerType, &peer, &msg))
        return NULL;
    int rc = XR_EINVAL;
    if (engine_open(self) && peer->p && peer->eng == self)
        rc = xr_notif_send(self->e, peer->p, msg.buf, (size_t)msg.len);
    else if (!PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "the peer belongs to another engine, or was unloaded");
    PyBuffer_Release(&msg);
    if (PyErr_Occurred())
        return NULL;
    return rc ? raise_xr(rc) : (Py_INCREF(Py_None), Py_None);
}

static PyObject *engine_fileno(EngineObject *self, PyObject *unused)
{
    (void)unused;
    if (!engine_open(self))
        return NULL;
    int fd = xr_engine_fd(self->e);
    return fd < 0 ? raise_xr(fd) : PyLong_FromLong(fd);
}

static PyObject *engine_progress(EngineObject *self, PyObject *unused)
{
    (void)unused;
    if (!engine_open(self))
        return NULL;
    int n;
    Py_BEGIN_ALLOW_THREADS
    n = xr_progress(self->e);
    Py_END_ALLOW_THREADS
    reap(self);
    return n < 0 ? raise_xr(n) : PyLong_FromLong(n);
}

static PyObject *engine_policy_reload(EngineObject *self, PyObject *args)
{
    const char *path;
    if (!PyArg_ParseTuple(args, "s:policy_reload", &path) || !engine_open(self))
        return NULL;
    int rc = xr_policy_reload(self->e, path);
    return rc ? raise_xr(rc) : (Py_INCREF(Py_None), Py_None);
}

static PyObject *engine_explain(EngineObject *self, PyObject *args, PyObject *kw)
{
    static char *kwl[] = {"peer", "size", "op", "kind", "device", NULL};
    PeerObject *peer;
    unsigned long long size;
    const char *op = "write", *kind = "host";
    int device = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!K|ssi:explain", kwl, &PeerType, &peer, &size,
                                     &op, &kind, &device) ||
        !engine_open(self))
        return NULL;
    if (strcmp(op, "write") && strcmp(op, "read"))
        return PyErr_Format(PyExc_ValueError, "op '%s': 'write' or 'read'", op);
    if (strcmp(kind, "host") && strcmp(kind, "cuda"))
        return PyErr_Format(PyExc_ValueError, "kind '%s': 'host' or 'cuda'", kind);
    char buf[8192];
    int rc = xr_policy_explain(self->e, peer->p, strcmp(op, "write") ? XR_OP_READ : XR_OP_WRITE,
                               strcmp(kind, "cuda") ? XR_MEM_HOST : XR_MEM_CUDA, device,
                               (size_t)size, buf, sizeof buf);
    return rc ? raise_xr(rc) : PyUnicode_FromString(buf);
}

static PyObject *engine_mr_cache_stats(EngineObject *self, PyObject *unused)
{
    (void)unused;
    if (!engine_open(self))
        return NULL;
    xr_mr_cache_stats s;
    int rc = xr_mr_cache_stats_get(self->e, &s);
    if (rc)
        return raise_xr(rc);
    PyObject *per = PyList_New(0);
    int nr = xr_rail_count(self->e);
    for (int i = 0; per && i < nr && i < XR_MAX_RAILS; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(s.rail_registrations[i]);
        if (!v || PyList_Append(per, v))
            Py_CLEAR(per);
        Py_XDECREF(v);
    }
    if (!per)
        return NULL;
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:N,s:K}", "hits",
                         (unsigned long long)s.hits, "misses", (unsigned long long)s.misses,
                         "evictions", (unsigned long long)s.evictions, "invalidations",
                         (unsigned long long)s.invalidations, "stale",
                         (unsigned long long)s.stale, "entries", (unsigned long long)s.entries,
                         "bytes", (unsigned long long)s.bytes, "in_use",
                         (unsigned long long)s.in_use, "registrations",
                         (unsigned long long)s.registrations, "deregistrations",
                         (unsigned long long)s.deregistrations, "rail_registrations", per,
                         "register_ns", (unsigned long long)s.register_ns);
}

static PyObject *engine_mr_cache_configure(EngineObject *self, PyObject *args, PyObject *kw)
{
    (void)args;
    static const char *const keys[] = {"enabled", "max_entries", "max_bytes", NULL};
    if (!engine_open(self))
        return NULL;
    /* Start from the settings in force: only what is named changes. */
    xr_mr_cache_opts o;
    int rc = xr_mr_cache_opts_get(self->e, &o);
    if (rc)
        return raise_xr(rc);
    if (kw) {
        if (check_keys(kw, "mr_cache_configure", keys))
            return NULL;
        unsigned long long me = o.max_entries, mb = o.max_bytes;
        if (opt_u64(kw, "max_entries", &me) || opt_u64(kw, "max_bytes", &mb))
            return NULL;
        PyObject *en = PyDict_GetItemString(kw, "enabled");
        if (en)
            o.enabled = PyObject_IsTrue(en);
        o.max_entries = me;
        o.max_bytes = mb;
    }
    rc = xr_mr_cache_configure(self->e, &o);
    return rc ? raise_xr(rc) : (Py_INCREF(Py_None), Py_None);
}

static PyObject *engine_mr_cache_flush(EngineObject *self, PyObject *unused)
{
    (void)unused;
    if (!engine_open(self))
        return NULL;
    int rc = xr_mr_cache_flush(self->e);
    return rc ? raise_xr(rc) : (Py_INCREF(Py_None), Py_None);
}

static PyObject *engine_invalidate(EngineObject *self, PyObject *args)
{
    PyObject *obj;
    if (!PyArg_ParseTuple(args, "O:invalidate", &obj) || !engine_open(self))
        return NULL;
    mem m;
    if (mem_of(obj, false, &m))
        return NULL;
    Py_XDECREF(m.keep);
    int rc = xr_mem_invalidate(self->e, (void *)(uintptr_t)m.addr, m.len);
    return rc ? raise_xr(rc) : (Py_INCREF(Py_None), Py_None);
}

static PyObject *engine_config(EngineObject *self, PyObject *unused)
{
    (void)unused;
    if (!engine_open(self))
        return NULL;
    char buf[16384];
    int rc = xr_engine_config_get(self->e, buf, sizeof buf);
    return rc ? raise_xr(rc) : PyUnicode_FromString(buf);
}

static PyObject *engine_group(EngineObject *self, PyObject *args, PyObject *kw);

static PyMethodDef engine_methods[] = {
    {"close", (PyCFunction)engine_close, METH_NOARGS,
     "Destroy the engine now. Transfers in flight get up to 5 s; every handle of the engine "
     "is inert afterwards."},
    {"__enter__", (PyCFunction)engine_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)engine_exit, METH_VARARGS, NULL},
    {"_rail_info", (PyCFunction)engine_rail_info, METH_NOARGS, "Rail info dicts."},
    {"fileno", (PyCFunction)engine_fileno, METH_NOARGS,
     "fileno() -> int: readable when a transfer ends or a notification arrives (for "
     "select, selectors, asyncio's loop.add_reader); os.read(fd, 8) clears it. The engine "
     "owns it."},
    {"set_rail_state", (PyCFunction)engine_set_rail_state, METH_VARARGS,
     "set_rail_state(index, up): take a rail out of new transfers, or back in."},
    {"register", (PyCFunction)(void (*)(void))engine_register, METH_VARARGS | METH_KEYWORDS,
     "register(obj, access='rw') -> Region. obj: a buffer (bytearray, memoryview, numpy), "
     "an object with __cuda_array_interface__, or an (addr, nbytes, 'host'|'cuda', device) "
     "tuple. access: what peers may do: 'rw', 'r', 'w' or 'none' (local use only)."},
    {"metadata", (PyCFunction)engine_metadata, METH_NOARGS,
     "metadata() -> bytes: this engine's rails, published regions and fields, for peers."},
    {"_set_field", (PyCFunction)engine_set_field, METH_VARARGS, NULL},
    {"open_directory", (PyCFunction)(void (*)(void))engine_open_directory,
     METH_VARARGS | METH_KEYWORDS,
     "open_directory(endpoints, prefix='/xrail/', ttl=10.0, request_timeout=2.0, user=None, "
     "password=None, ca_file=None, cert_file=None, key_file=None): publish this engine in "
     "etcd and watch the prefix (docs/discovery.md)."},
    {"close_directory", (PyCFunction)engine_close_directory, METH_NOARGS,
     "close_directory(): leave the directory now (close() does it too)."},
    {"lookup", (PyCFunction)(void (*)(void))engine_lookup, METH_VARARGS | METH_KEYWORDS,
     "lookup(name, timeout=30.0) -> Peer: the peer published as name, loaded on first use "
     "and kept up to date; the directory owns it."},
    {"directory_events", (PyCFunction)engine_directory_events, METH_NOARGS,
     "directory_events() -> [(kind, name, revision)]: 'join', 'update', 'leave', oldest "
     "first; fileno() becomes readable when one comes."},
    {"load_peer", (PyCFunction)engine_load_peer, METH_VARARGS,
     "load_peer(metadata: bytes) -> Peer."},
    {"write", (PyCFunction)(void (*)(void))engine_write, METH_VARARGS | METH_KEYWORDS,
     "write(peer, local, remote, notif=None) -> Transfer, posted. local: buffers or "
     "(buffer or addr, length) pairs; remote: (addr, length) pairs in the peer's regions. "
     "notif reaches the peer after every byte."},
    {"read", (PyCFunction)(void (*)(void))engine_read, METH_VARARGS | METH_KEYWORDS,
     "read(peer, local, remote, notif=None) -> Transfer, posted: remote into local."},
    {"_notif_get", (PyCFunction)engine_notif_get, METH_VARARGS, NULL},
    {"group", (PyCFunction)(void (*)(void))engine_group, METH_VARARGS | METH_KEYWORDS,
     "group(peer, notif=None) -> Group: transfers posted with write(..., group=g) or "
     "read(..., group=g) end as one; after g.seal(), notif reaches the peer after every byte "
     "of all of them."},
    {"send_notif", (PyCFunction)engine_send_notif, METH_VARARGS,
     "send_notif(peer, data: bytes): a standalone notification of any length."},
    {"progress", (PyCFunction)engine_progress, METH_NOARGS,
     "progress() -> int: drive completions once (without a progress thread)."},
    {"policy_reload", (PyCFunction)engine_policy_reload, METH_VARARGS,
     "policy_reload(path): swap the rail policy atomically; a broken one raises ScriptError "
     "and the old one stays."},
    {"explain", (PyCFunction)(void (*)(void))engine_explain, METH_VARARGS | METH_KEYWORDS,
     "explain(peer, size, op='write', kind='host', device=-1) -> str: the plan for that "
     "class of transfer."},
    {"mr_cache_stats", (PyCFunction)engine_mr_cache_stats, METH_NOARGS,
     "mr_cache_stats() -> dict of the registration cache's counters."},
    {"mr_cache_configure", (PyCFunction)(void (*)(void))engine_mr_cache_configure,
     METH_VARARGS | METH_KEYWORDS,
     "mr_cache_configure(enabled=, max_entries=, max_bytes=): change what is named."},
    {"mr_cache_flush", (PyCFunction)engine_mr_cache_flush, METH_NOARGS,
     "Drop every unused registration."},
    {"invalidate", (PyCFunction)engine_invalidate, METH_VARARGS,
     "invalidate(buffer or (addr, nbytes, kind, device)): drop cached registrations of memory "
     "used on demand, before freeing it."},
    {"config", (PyCFunction)engine_config, METH_NOARGS,
     "config() -> str: the effective settings, as a config script."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef engine_getset[] = {
    {"name", (getter)engine_get_name, NULL, "The engine's name.", NULL},
    {"closed", (getter)engine_get_closed, NULL, "Whether close() ran.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "xrail._xrail.Engine",
    .tp_basicsize = sizeof(EngineObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Engine(name, config=None, **settings): one per process; owns the rails.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)engine_init,
    .tp_dealloc = (destructor)engine_dealloc,
    .tp_traverse = (traverseproc)engine_traverse,
    .tp_methods = engine_methods,
    .tp_getset = engine_getset,
};

/* ---- regions ---- */

static PyObject *region_deregister(RegionObject *self, PyObject *unused)
{
    (void)unused;
    if (self->r && self->eng->e) {
        int rc = xr_mem_deregister(self->r);
        if (rc)
            return raise_xr(rc);
    }
    self->r = NULL;
    Py_CLEAR(self->keep);
    Py_RETURN_NONE;
}

static void region_dealloc(RegionObject *self)
{
    if (self->r && self->eng->e && xr_mem_deregister(self->r) == XR_EBUSY) {
        /* A transfer still uses it: finish later, keeping the memory. */
        park(self->eng, self->r, "xr_region", self->keep);
    }
    Py_XDECREF(self->keep);
    Py_DECREF(self->eng);
    PyObject_Del(self);
}

static PyObject *region_get(RegionObject *self, void *which)
{
    switch ((intptr_t)which) {
    case 0: return PyLong_FromUnsignedLongLong(self->addr);
    case 1: return PyLong_FromSize_t(self->len);
    case 2: return PyUnicode_FromString(self->kind == XR_MEM_CUDA ? "cuda" : "host");
    default: return PyLong_FromLong(self->device);
    }
}

static PyMethodDef region_methods[] = {
    {"deregister", (PyCFunction)region_deregister, METH_NOARGS,
     "Deregister now; Busy while a transfer that uses it is in flight."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef region_getset[] = {
    {"addr", (getter)region_get, NULL, "Start address.", (void *)0},
    {"nbytes", (getter)region_get, NULL, "Length in bytes.", (void *)1},
    {"kind", (getter)region_get, NULL, "'host' or 'cuda'.", (void *)2},
    {"device", (getter)region_get, NULL, "CUDA device, or -1.", (void *)3},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RegionType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "xrail._xrail.Region",
    .tp_basicsize = sizeof(RegionObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Registered memory (Engine.register). Deregistered when dropped.",
    .tp_dealloc = (destructor)region_dealloc,
    .tp_methods = region_methods,
    .tp_getset = region_getset,
};

/* ---- peers ---- */

static PyObject *peer_connect(PeerObject *self, PyObject *args)
{
    double timeout = 30;
    if (!PyArg_ParseTuple(args, "|d:connect", &timeout))
        return NULL;
    if (!self->p || !self->eng->e)
        return raise_msg(XR_EINVAL, "the peer was unloaded, or its engine closed");
    int rc;
    int ms = timeout < 0 ? -1 : timeout > 2e6 ? 2000000000 : (int)(timeout * 1000);
    Py_BEGIN_ALLOW_THREADS
    rc = xr_peer_connect(self->p, ms);
    Py_END_ALLOW_THREADS
    if (rc)
        return raise_xr(rc);
    Py_RETURN_NONE;
}

static PyObject *peer_unload(PeerObject *self, PyObject *unused)
{
    (void)unused;
    if (self->from_dir)
        return raise_msg(XR_EINVAL, "a peer from Engine.lookup belongs to the directory");
    if (self->p && self->eng->e) {
        int rc = xr_peer_unload(self->p);
        if (rc)
            return raise_xr(rc);
    }
    self->p = NULL;
    Py_RETURN_NONE;
}

static void peer_dealloc(PeerObject *self)
{
    if (self->p && self->eng->e && !self->from_dir)
        xr_peer_unload(self->p);
    Py_DECREF(self->eng);
    PyObject_Del(self);
}

static int peer_ok(PeerObject *self)
{
    if (self->p && self->eng->e)
        return 1;
    PyErr_SetString(Error, "the peer was unloaded, or its engine closed");
    return 0;
}

static PyObject *peer_get_name(PeerObject *self, void *c)
{
    (void)c;
    return peer_ok(self) ? PyUnicode_FromString(xr_peer_name(self->p)) : NULL;
}

static PyObject *peer_get_rails(PeerObject *self, void *c)
{
    (void)c;
    return peer_ok(self) ? PyLong_FromLong(xr_peer_rail_count(self->p)) : NULL;
}

/* A field's bytes as its layout types them: integers as int (host byte
 * order, as xr_metadata_set_field takes them), strings as str (bytes that
 * are not UTF-8 kept as surrogates), anything else as bytes. */
static PyObject *typed_field(int type, PyObject *b)
{
    const char *v = PyBytes_AS_STRING(b);
    size_t n = (size_t)PyBytes_GET_SIZE(b);
    static const size_t width[] = {[XR_FIELD_U8] = 1, [XR_FIELD_U16] = 2, [XR_FIELD_U32] = 4,
                                   [XR_FIELD_U64] = 8, [XR_FIELD_I32] = 4};
    PyObject *r = NULL;
    if (type >= XR_FIELD_U8 && type <= XR_FIELD_I32 && n == width[type]) {
        uint8_t u8;
        uint16_t u16;
        uint32_t u32;
        uint64_t u64 = 0;
        int32_t i32;
        switch (type) {
        case XR_FIELD_U8: memcpy(&u8, v, 1), u64 = u8; break;
        case XR_FIELD_U16: memcpy(&u16, v, 2), u64 = u16; break;
        case XR_FIELD_U32: memcpy(&u32, v, 4), u64 = u32; break;
        case XR_FIELD_I32: memcpy(&i32, v, 4); r = PyLong_FromLong(i32); break;
        default: memcpy(&u64, v, 8); break;
        }
        if (!r)
            r = PyLong_FromUnsignedLongLong(u64);
    } else if (type == XR_FIELD_STRING) {
        r = PyUnicode_DecodeUTF8(v, (Py_ssize_t)n, "surrogateescape");
    } else {
        Py_INCREF(b);
        r = b;
    }
    Py_DECREF(b);
    return r;
}

static PyObject *peer_field(PeerObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "raw", NULL};
    const char *name;
    int raw = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|p:field", kwlist, &name, &raw) ||
        !peer_ok(self))
        return NULL;
    size_t len = 0;
    int rc = xr_peer_field(self->p, name, NULL, &len);
    if (rc && rc != XR_ETOOSMALL)
        return raise_xr(rc);
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    if (!b)
        return NULL;
    rc = len ? xr_peer_field(self->p, name, PyBytes_AS_STRING(b), &len) : 0;
    if (rc) {
        Py_DECREF(b);
        return raise_xr(rc);
    }
    return raw ? b : typed_field(xr_metadata_field_type(self->eng->e, name), b);
}

static PyMethodDef peer_methods[] = {
    {"connect", (PyCFunction)peer_connect, METH_VARARGS,
     "connect(timeout=30): set up every rail's connection now, all at once, so that the first "
     "transfer runs warm (xr_peer_connect)."},
    {"unload", (PyCFunction)peer_unload, METH_NOARGS,
     "Unload now; transfers in flight to it complete."},
    {"field", (PyCFunction)(void (*)(void))peer_field, METH_VARARGS | METH_KEYWORDS,
     "field(name, raw=False) -> int | str | bytes: a custom field the peer published (its default\n"
     "if the layout has one and the peer left it out), typed by this engine's layout: an integer\n"
     "type as int, a string as str, bytes and undeclared names as bytes; raw=True gives the bytes\n"
     "always. NotFound if there is no such field."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef peer_getset[] = {
    {"name", (getter)peer_get_name, NULL, "The peer engine's name.", NULL},
    {"rail_count", (getter)peer_get_rails, NULL, "The peer's own rail count.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PeerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "xrail._xrail.Peer",
    .tp_basicsize = sizeof(PeerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A remote engine, from its metadata (Engine.load_peer).",
    .tp_dealloc = (destructor)peer_dealloc,
    .tp_methods = peer_methods,
    .tp_getset = peer_getset,
};

/* ---- transfers ---- */

static int xfer_ok(TransferObject *self)
{
    if (self->x && self->eng->e)
        return 1;
    PyErr_SetString(Error, "the transfer's engine was closed");
    return 0;
}

static PyObject *xfer_wait(TransferObject *self, PyObject *args, PyObject *kw)
{
    static char *kwl[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:wait", kwl, &timeout) || !xfer_ok(self))
        return NULL;
    int ms = -1;
    if (timeout != Py_None) {
        double s = PyFloat_AsDouble(timeout);
        if (s == -1.0 && PyErr_Occurred())
            return NULL;
        ms = s <= 0 ? 0 : s > 2e6 ? 2000000000 : (int)(s * 1000);
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = xr_xfer_wait(self->x, ms);
    Py_END_ALLOW_THREADS
    if (rc)
        return raise_msg(rc, rc == XR_ETIMEDOUT ? NULL : xr_xfer_error(self->x));
    Py_RETURN_NONE;
}

static PyObject *xfer_done(TransferObject *self, PyObject *unused)
{
    (void)unused;
    if (!xfer_ok(self))
        return NULL;
    int s = xr_xfer_status(self->x);
    if (s == XR_EINPROGRESS) {
        Py_BEGIN_ALLOW_THREADS
        xr_progress(self->eng->e);
        Py_END_ALLOW_THREADS
        s = xr_xfer_status(self->x);
    }
    return PyBool_FromLong(s != XR_EINPROGRESS);
}

static PyObject *xfer_get_status(TransferObject *self, void *c)
{
    (void)c;
    if (!xfer_ok(self))
        return NULL;
    int s = xr_xfer_status(self->x);
    if (s == XR_EINPROGRESS)
        return PyUnicode_FromString("in progress");
    if (s == 0)
        return PyUnicode_FromString("done");
    return PyUnicode_FromFormat("failed: %s: %s", xr_err_name(s), xr_xfer_error(self->x));
}

static PyObject *xfer_repost(TransferObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"notif", NULL};
    PyObject *notif = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:repost", kwlist, &notif) || !xfer_ok(self))
        return NULL;
    int rc;
    if (!notif) {
        rc = xr_xfer_post(self->x);
    } else if (notif == Py_None) {
        rc = xr_xfer_post_notif(self->x, NULL, 0);
    } else {
        Py_buffer b;
        if (PyObject_GetBuffer(notif, &b, PyBUF_SIMPLE))
            return NULL;
        rc = xr_xfer_post_notif(self->x, b.buf, (size_t)b.len);
        PyBuffer_Release(&b);
    }
    return rc ? raise_xr(rc) : (Py_INCREF(Py_None), Py_None);
}

static PyObject *xfer_cancel(TransferObject *self, PyObject *unused)
{
    (void)unused;
    if (!xfer_ok(self))
        return NULL;
    int rc = xr_xfer_cancel(self->x);
    return rc ? raise_xr(rc) : (Py_INCREF(Py_None), Py_None);
}

static PyObject *xfer_set_timeout(TransferObject *self, PyObject *args)
{
    unsigned ms = 0;
    if (!PyArg_ParseTuple(args, "I:set_timeout", &ms) || !xfer_ok(self))
        return NULL;
    int rc = xr_xfer_set_timeout(self->x, ms);
    return rc ? raise_xr(rc) : (Py_INCREF(Py_None), Py_None);
}

static PyObject *xfer_chunks(TransferObject *self, PyObject *args)
{
    int rail = -1;
    if (!PyArg_ParseTuple(args, "|i:chunk_count", &rail) || !xfer_ok(self))
        return NULL;
    return PyLong_FromSize_t(xr_xfer_chunk_count(self->x, rail));
}

static void xfer_dealloc(TransferObject *self)
{
    if (self->x && self->eng->e) {
        if (xr_xfer_status(self->x) == XR_EINPROGRESS)
            park(self->eng, self->x, "xr_xfer", self->keep); /* its buffers stay */
        else
            xr_xfer_release(self->x);
    }
    Py_XDECREF(self->keep);
    Py_DECREF(self->peer);
    Py_DECREF(self->eng);
    PyObject_Del(self);
}

static PyObject *xfer_get_engine(TransferObject *self, void *c)
{
    (void)c;
    Py_INCREF(self->eng);
    return (PyObject *)self->eng;
}

/* The coroutine of a transfer's or a group's wait_async lives in Python
 * (xrail._wait_async), on the engine's fd. */
static PyObject *wait_async(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwl[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:wait_async", kwl, &timeout))
        return NULL;
    PyObject *mod = PyImport_ImportModule("xrail");
    PyObject *fn = mod ? PyObject_GetAttrString(mod, "_wait_async") : NULL;
    Py_XDECREF(mod);
    if (!fn)
        return NULL;
    PyObject *r = PyObject_CallFunctionObjArgs(fn, self, timeout, NULL);
    Py_DECREF(fn);
    return r;
}

static PyMethodDef xfer_methods[] = {
    {"wait", (PyCFunction)(void (*)(void))xfer_wait, METH_VARARGS | METH_KEYWORDS,
     "wait(timeout=None): until done, with the GIL released; raises the transfer's error, "
     "or Timeout."},
    {"done", (PyCFunction)xfer_done, METH_NOARGS, "done() -> bool, driving progress once."},
    {"wait_async", (PyCFunction)(void (*)(void))wait_async, METH_VARARGS | METH_KEYWORDS,
     "await wait_async(timeout=None): wait in an asyncio loop, woken through the engine's "
     "fd; raises as wait() does."},
    {"repost", (PyCFunction)(void (*)(void))xfer_repost, METH_VARARGS | METH_KEYWORDS,
     "repost(notif=...): post the same transfer again (its plan is reused); Busy while in "
     "flight. With notif (bytes, or None for none), that notification replaces the "
     "transfer's own from this post on."},
    {"cancel", (PyCFunction)xfer_cancel, METH_NOARGS,
     "Stop posting it; it ends with Canceled once the providers give back what they hold."},
    {"set_timeout", (PyCFunction)xfer_set_timeout, METH_VARARGS,
     "set_timeout(ms): from the next post, fail with Timeout after ms (0: none)."},
    {"chunk_count", (PyCFunction)xfer_chunks, METH_VARARGS,
     "chunk_count(rail=-1) -> int: chunks in all, or on one rail."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef xfer_getset[] = {
    {"status", (getter)xfer_get_status, NULL,
     "'in progress', 'done' or 'failed: NAME: detail'.", NULL},
    {"engine", (getter)xfer_get_engine, NULL, "The engine it belongs to.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TransferType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "xrail._xrail.Transfer",
    .tp_basicsize = sizeof(TransferObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A posted READ or WRITE (Engine.write, Engine.read).",
    .tp_dealloc = (destructor)xfer_dealloc,
    .tp_methods = xfer_methods,
    .tp_getset = xfer_getset,
};

/* ---- the module ---- */

/* ---- the log, into a Python callable (xrail.log_to_python) ---- */

static PyObject *log_callable; /* held while it is the handler */

/* Called from any thread that logs, with no xrail lock held. */
static void log_to_callable(int level, const char *engine, const char *msg, void *user)
{
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *r = PyObject_CallFunction((PyObject *)user, "iss", level, engine, msg);
    if (!r)
        PyErr_WriteUnraisable((PyObject *)user); /* a logger must not break the engine */
    Py_XDECREF(r);
    PyGILState_Release(g);
}

static PyObject *set_log_handler(PyObject *mod, PyObject *fn)
{
    (void)mod;
    if (fn != Py_None && !PyCallable_Check(fn))
        return PyErr_Format(PyExc_TypeError, "set_log_handler: a callable or None");
    PyObject *old = log_callable;
    log_callable = fn == Py_None ? NULL : (Py_INCREF(fn), fn);
    /* The GIL is released while calls to the old handler, which take it,
     * finish; once this returns none runs, and the old callable can go. */
    Py_BEGIN_ALLOW_THREADS
    xr_log_set_handler(log_callable ? log_to_callable : NULL, log_callable);
    Py_END_ALLOW_THREADS
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

/* ---- groups ---- */

static PyObject *engine_group(EngineObject *self, PyObject *args, PyObject *kw)
{
    static char *kwl[] = {"peer", "notif", NULL};
    PeerObject *peer;
    Py_buffer notif = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!|z*:group", kwl, &PeerType, &peer, &notif))
        return NULL;
    PyObject *r = NULL;
    if (!engine_open(self))
        goto out;
    if (peer->eng != self || !peer->p) {
        PyErr_SetString(PyExc_ValueError, "the peer belongs to another engine, or was unloaded");
        goto out;
    }
    xr_group *g;
    int rc = xr_group_create(self->e, peer->p, notif.buf, notif.obj ? (size_t)notif.len : 0, &g);
    if (rc) {
        raise_xr(rc);
        goto out;
    }
    GroupObject *go = PyObject_New(GroupObject, &GroupType);
    if (!go) {
        xr_group_release(g);
        goto out;
    }
    Py_INCREF(self);
    Py_INCREF(peer);
    go->eng = self;
    go->peer = peer;
    go->g = g;
    r = (PyObject *)go;
out:
    if (notif.obj)
        PyBuffer_Release(&notif);
    return r;
}

static int group_ok(GroupObject *self)
{
    if (self->g && self->eng->e)
        return 1;
    PyErr_SetString(Error, self->g ? "the group's engine was closed" : "the group was released");
    return 0;
}

static PyObject *group_seal(GroupObject *self, PyObject *unused)
{
    (void)unused;
    if (!group_ok(self))
        return NULL;
    int rc = xr_group_seal(self->g);
    return rc ? raise_xr(rc) : (Py_INCREF(Py_None), Py_None);
}

static PyObject *group_wait(GroupObject *self, PyObject *args, PyObject *kw)
{
    static char *kwl[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:wait", kwl, &timeout) || !group_ok(self))
        return NULL;
    int ms = -1;
    if (timeout != Py_None) {
        double t = PyFloat_AsDouble(timeout);
        if (t == -1.0 && PyErr_Occurred())
            return NULL;
        ms = t <= 0 ? 0 : t > 2e6 ? 2000000000 : (int)(t * 1000);
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = xr_group_wait(self->g, ms);
    Py_END_ALLOW_THREADS
    if (rc)
        return raise_msg(rc, rc == XR_ETIMEDOUT ? NULL : xr_group_error(self->g));
    Py_RETURN_NONE;
}

static PyObject *group_release(GroupObject *self, PyObject *unused)
{
    (void)unused;
    if (self->g && self->eng->e)
        xr_group_release(self->g);
    self->g = NULL;
    Py_RETURN_NONE;
}

static PyObject *group_get_status(GroupObject *self, void *c)
{
    (void)c;
    if (!group_ok(self))
        return NULL;
    int s = xr_group_status(self->g);
    if (s == XR_EINPROGRESS)
        return PyUnicode_FromString("in progress");
    if (s == 0)
        return PyUnicode_FromString("done");
    return PyUnicode_FromFormat("failed: %s: %s", xr_err_name(s), xr_group_error(self->g));
}

static PyObject *group_get_engine(GroupObject *self, void *c)
{
    (void)c;
    Py_INCREF(self->eng);
    return (PyObject *)self->eng;
}

static void group_dealloc(GroupObject *self)
{
    if (self->g && self->eng->e)
        xr_group_release(self->g); /* one in flight is freed when its members end */
    Py_DECREF(self->peer);
    Py_DECREF(self->eng);
    PyObject_Del(self);
}

static PyMethodDef group_methods[] = {
    {"seal", (PyCFunction)group_seal, METH_NOARGS,
     "seal(): no more members; once all have landed, the notification goes."},
    {"wait", (PyCFunction)(void (*)(void))group_wait, METH_VARARGS | METH_KEYWORDS,
     "wait(timeout=None): until it ended, the GIL released; raises the first member's error, "
     "or Timeout."},
    {"wait_async", (PyCFunction)(void (*)(void))wait_async, METH_VARARGS | METH_KEYWORDS,
     "await wait_async(timeout=None): as wait(), in an asyncio loop."},
    {"release", (PyCFunction)group_release, METH_NOARGS,
     "release(): let it go (released before seal(), it never notifies)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef group_getset[] = {
    {"status", (getter)group_get_status, NULL,
     "'in progress', 'done' or 'failed: NAME: detail'.", NULL},
    {"engine", (getter)group_get_engine, NULL, "The engine it belongs to.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject GroupType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "xrail._xrail.Group",
    .tp_basicsize = sizeof(GroupObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Transfers to one peer that end as one, with one notification after all "
              "(Engine.group; members are posted with write(..., group=g)).",
    .tp_dealloc = (destructor)group_dealloc,
    .tp_methods = group_methods,
    .tp_getset = group_getset,
};

static PyMethodDef module_methods[] = {
    {"set_log_handler", set_log_handler, METH_O,
     "set_log_handler(fn): fn(level, engine, message) gets every log line, from any thread; "
     "None: back to stderr."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_xrail", "The C core of the xrail package.", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__xrail(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    PyTypeObject *types[] = {&EngineType, &RegionType, &PeerType, &TransferType, &GroupType};
    const char *names[] = {"Engine", "Region", "Peer", "Transfer", "Group"};
    for (int i = 0; i < 5; i++) {
        if (PyType_Ready(types[i]) < 0)
            return NULL;
        Py_INCREF(types[i]);
        PyModule_AddObject(m, names[i], (PyObject *)types[i]);
    }
    Error = PyErr_NewExceptionWithDoc("xrail.Error",
                                      "An engine call failed; .code and .name say how, the "
                                      "message says what.",
                                      NULL, NULL);
    if (!Error)
        return NULL;
    Py_INCREF(Error);
    PyModule_AddObject(m, "Error", Error);
    PyModule_AddStringConstant(m, "version", xr_version());
    for (size_t i = 0; i < sizeof error_classes / sizeof error_classes[0]; i++) {
        char qual[64];
        snprintf(qual, sizeof qual, "xrail.%s", error_classes[i].name);
        PyObject *bases = error_classes[i].base
                              ? PyTuple_Pack(2, Error, *error_classes[i].base)
                              : PyTuple_Pack(1, Error);
        PyObject *cls = bases ? PyErr_NewException(qual, bases, NULL) : NULL;
        Py_XDECREF(bases);
        if (!cls)
            return NULL;
        errors[-error_classes[i].code] = cls;
        Py_INCREF(cls);
        PyModule_AddObject(m, error_classes[i].name, cls);
    }
    return m;
}
