/* The two halves of a split virtqueue, compiled: the same state machines as the
 * pure-Python amplink.virtio.virtqueue (same methods, same answers, same errors, the
 * same checks of everything the peer writes), without an interpreter frame per ring
 * access.  amplink.virtio.rings chooses between the two.
 *
 * Shared memory is reached through the memoryviews the window handed out (so that the
 * region can still release them and unmap): each call takes their pointers again and
 * refuses a released view, as indexing one does.  Every call runs with the GIL held and
 * never releases it, so a call is atomic for the threads of this process and for
 * Python's signal handlers (which run between bytecodes, never inside a C call).
 *
 * Memory model (amplink/memory/barrier.py): on x86-64 stores stay in order and loads
 * stay in order; the index is published after the entries with a volatile store, read
 * before them with a volatile load, and a compiler barrier keeps the C compiler from
 * moving either.  The one store->load order the suppression handshake needs is a full
 * fence (__atomic_thread_fence(__ATOMIC_SEQ_CST): mfence).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4
#define VRING_USED_F_NO_NOTIFY 1
#define VRING_AVAIL_F_NO_INTERRUPT 1

#define SEND_NO_BUFFER (-1)
#define SEND_TOO_SMALL (-2)
#define RPMSG_HDR_SIZE 16

#define BARRIER() __asm__ __volatile__("" ::: "memory")
#define ALLOC(type, n) ((type *)PyMem_Calloc((size_t)(n), sizeof(type)))

static PyObject *VirtqueueError;  /* amplink.errors.VirtqueueError */
static PyObject *AddressError;    /* amplink.errors.AddressError */
static PyObject *TRACER;          /* amplink.tracing.TRACER */
static PyObject *str_enabled, *str_event, *str_virtio, *str_add, *str_get, *str_put;
static PyObject *str_vq, *str_desc, *str_len, *str_strerror, *str_cast, *str_view;
static PyObject *str_deliver, *str_callback, *str_zero_copy;

/* ---- shared memory ------------------------------------------------------------------ */

/* The bytes of a memoryview the window handed out; NULL (ValueError) once released. */
static inline uint8_t *mv_ptr(PyObject *mv) {
    if (mv == NULL) {  /* (never initialised: made by __new__ alone, or __init__ failed) */
        PyErr_SetString(PyExc_ValueError, "the virtqueue was not initialised");
        return NULL;
    }
    PyMemoryViewObject *m = (PyMemoryViewObject *)mv;
    if (m->flags & _Py_MEMORYVIEW_RELEASED) {
        PyErr_SetString(PyExc_ValueError, "operation forbidden on released memoryview object");
        return NULL;
    }
    return (uint8_t *)m->view.buf;
}

static inline uint16_t ld16(const uint8_t *p) { return *(volatile const uint16_t *)p; }
static inline uint32_t ld32(const uint8_t *p) { return *(volatile const uint32_t *)p; }
static inline uint64_t ld64(const uint8_t *p) { return *(volatile const uint64_t *)p; }
static inline void st16(uint8_t *p, uint16_t v) { *(volatile uint16_t *)p = v; }
static inline void st32(uint8_t *p, uint32_t v) { *(volatile uint32_t *)p = v; }
static inline void st64(uint8_t *p, uint64_t v) { *(volatile uint64_t *)p = v; }

/* A typed view of [offset, offset + length) of the window, as the Python halves make. */
static PyObject *window_cast(PyObject *window, Py_ssize_t offset, Py_ssize_t length,
                             const char *fmt) {
    return PyObject_CallMethod(window, "cast", "nns", offset, length, fmt);
}

/* ``*out`` = ``v`` if it is an int in [0, top], else ValueError (as the Python half's). */
static int in_range(PyObject *v, unsigned long long top, const char *what,
                    unsigned long long *out) {
    unsigned long long x = PyLong_Check(v) ? PyLong_AsUnsignedLongLong(v) : (unsigned long long)-1;
    if (PyLong_Check(v) && !(x == (unsigned long long)-1 && PyErr_Occurred()) && x <= top) {
        *out = x;
        return 0;
    }
    if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
    PyErr_Clear();
    PyErr_Format(PyExc_ValueError, "%s %R is out of range [0, %llu]", what, v, top);
    return -1;
}

static int tracing(void) {
    PyObject *on = PyObject_GetAttr(TRACER, str_enabled);
    if (on == NULL) {
        PyErr_Clear();
        return 0;
    }
    int yes = PyObject_IsTrue(on);
    Py_DECREF(on);
    if (yes < 0) {
        PyErr_Clear();
        return 0;
    }
    return yes;
}

/* TRACER.event("virtio", what, vq=name, desc=d, len=n); errors propagate. */
static int trace(PyObject *what, PyObject *name, long d, unsigned long long n) {
    PyObject *event = PyObject_GetAttr(TRACER, str_event);
    if (event == NULL) return -1;
    PyObject *args = PyTuple_Pack(2, str_virtio, what);
    PyObject *kw = Py_BuildValue("{O:O,O:l,O:K}", str_vq, name, str_desc, d, str_len, n);
    PyObject *r = (args && kw) ? PyObject_Call(event, args, kw) : NULL;
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_DECREF(event);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

/* ---- what both halves share (amplink.virtio.virtqueue._Vring) ----------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *name;       /* str */
    PyObject *parts;      /* VringParts */
    PyObject *broken;     /* VirtqueueError or None */
    PyObject *break_next; /* str or None: what the entry a batch stopped at has wrong */
    PyObject *desc_q;     /* the views, as the Python halves name them */
    PyObject *desc_i;
    PyObject *desc_h;
    PyObject *avail;
    PyObject *used_h;
    PyObject *used_e;
    unsigned num;
    unsigned mask;
    int owed;
    int ready;            /* __init__ finished: the arrays are there, num long */
} Vring;

/* Every method starts here: an object __init__ never finished has no arrays. */
#define READY_OR(self, ret)                                                         \
    if (!(self)->r.ready) {                                                         \
        PyErr_SetString(PyExc_ValueError, "the virtqueue was not initialised");      \
        return ret;                                                                 \
    }

/* Raise the queue's stored error again, with a traceback of this raise only (else each
 * raise would add to the last one's, without bound). */
static void raise_broken(PyObject *broken) {
    PyException_SetTraceback(broken, Py_None);
    PyErr_SetObject(VirtqueueError, broken);
}

static PyObject *vring_break(Vring *self, PyObject *message) {
    /* Break the queue with ``message`` (a str, consumed); returns NULL with it raised. */
    if (message == NULL) return NULL;
    PyObject *err = PyObject_CallFunctionObjArgs(VirtqueueError, self->name, message, NULL);
    Py_DECREF(message);
    if (err == NULL) return NULL;
    Py_XSETREF(self->broken, err);
    PyErr_SetObject(VirtqueueError, err);
    return NULL;
}

static int vring_check_take(Vring *self) {
    if (self->broken != Py_None) {
        raise_broken(self->broken);
        return -1;
    }
    if (self->break_next != Py_None) {
        PyObject *msg = self->break_next;
        Py_INCREF(msg);
        vring_break(self, msg);
        return -1;
    }
    return 0;
}

static int vring_init_views(Vring *self, PyObject *window, PyObject *parts, PyObject *name) {
    Py_ssize_t num, desc, avail, used;
    PyObject *v;
    if (!PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "name must be a str");
        return -1;
    }
#define PART(field, out)                                        \
    v = PyObject_GetAttrString(parts, field);                   \
    if (v == NULL) return -1;                                   \
    out = PyLong_AsSsize_t(v);                                  \
    Py_DECREF(v);                                               \
    if (out == -1 && PyErr_Occurred()) return -1;
    PART("num", num)
    PART("desc", desc)
    PART("avail", avail)
    PART("used", used)
#undef PART
    if (num < 1 || num > 32768 || (num & (num - 1))) {
        PyErr_Format(PyExc_ValueError, "vring num %zd is not a power of 2 in [1, 32768]", num);
        return -1;
    }
    self->num = (unsigned)num;
    self->mask = (unsigned)num - 1;
    Py_INCREF(name);
    Py_XSETREF(self->name, name);
    Py_INCREF(parts);
    Py_XSETREF(self->parts, parts);
    Py_INCREF(Py_None);
    Py_XSETREF(self->broken, Py_None);
    Py_INCREF(Py_None);
    Py_XSETREF(self->break_next, Py_None);
    self->owed = 0;
    Py_ssize_t table = 16 * num;
    Py_XSETREF(self->desc_q, window_cast(window, desc, table, "Q"));
    if (self->desc_q == NULL) return -1;
    Py_XSETREF(self->desc_i, window_cast(window, desc, table, "I"));
    if (self->desc_i == NULL) return -1;
    Py_XSETREF(self->desc_h, window_cast(window, desc, table, "H"));
    if (self->desc_h == NULL) return -1;
    Py_XSETREF(self->avail, window_cast(window, avail, 2 * (3 + num), "H"));
    if (self->avail == NULL) return -1;
    Py_XSETREF(self->used_h, window_cast(window, used, 4, "H"));
    if (self->used_h == NULL) return -1;
    Py_XSETREF(self->used_e, window_cast(window, used + 4, 8 * num, "I"));
    if (self->used_e == NULL) return -1;
    PyObject *views[] = {self->desc_q, self->avail, self->used_h, self->used_e};
    for (int i = 0; i < 4; i++) {
        if (!PyMemoryView_Check(views[i])) {
            PyErr_SetString(PyExc_TypeError, "the window's cast() must return memoryviews");
            return -1;
        }
    }
    return 0;
}

static int vring_traverse(Vring *self, visitproc visit, void *arg) {
    Py_VISIT(self->name);
    Py_VISIT(self->parts);
    Py_VISIT(self->broken);
    Py_VISIT(self->break_next);
    Py_VISIT(self->desc_q);
    Py_VISIT(self->desc_i);
    Py_VISIT(self->desc_h);
    Py_VISIT(self->avail);
    Py_VISIT(self->used_h);
    Py_VISIT(self->used_e);
    return 0;
}

static int vring_clear(Vring *self) {
    Py_CLEAR(self->name);
    Py_CLEAR(self->parts);
    Py_CLEAR(self->broken);
    Py_CLEAR(self->break_next);
    Py_CLEAR(self->desc_q);
    Py_CLEAR(self->desc_i);
    Py_CLEAR(self->desc_h);
    Py_CLEAR(self->avail);
    Py_CLEAR(self->used_h);
    Py_CLEAR(self->used_e);
    return 0;
}

static PyObject *vring_notified(Vring *self, PyObject *Py_UNUSED(ignored)) {
    self->owed = 0;
    Py_RETURN_NONE;
}

static PyObject *vring_get_broken(Vring *self, void *Py_UNUSED(closure)) {
    PyObject *broken = self->broken ? self->broken : Py_None;
    Py_INCREF(broken);
    return broken;
}

static PyObject *vring_get_owed(Vring *self, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(self->owed);
}

static PyObject *vring_get_mask(Vring *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLong(self->mask);
}

static PyObject *vring_get_num(Vring *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLong(self->num);
}

#define VRING_MEMBERS                                                              \
    {"name", T_OBJECT_EX, offsetof(Vring, name), READONLY, NULL},                  \
    {"parts", T_OBJECT_EX, offsetof(Vring, parts), READONLY, NULL},                \
    {"_desc_q", T_OBJECT_EX, offsetof(Vring, desc_q), READONLY, NULL},             \
    {"_desc_i", T_OBJECT_EX, offsetof(Vring, desc_i), READONLY, NULL},             \
    {"_desc_h", T_OBJECT_EX, offsetof(Vring, desc_h), READONLY, NULL},             \
    {"_avail", T_OBJECT_EX, offsetof(Vring, avail), READONLY, NULL},               \
    {"_used_h", T_OBJECT_EX, offsetof(Vring, used_h), READONLY, NULL},             \
    {"_used_e", T_OBJECT_EX, offsetof(Vring, used_e), READONLY, NULL}

#define VRING_GETSETS                                                              \
    {"broken", (getter)vring_get_broken, NULL, NULL, NULL},                        \
    {"_owed", (getter)vring_get_owed, NULL, NULL, NULL},                           \
    {"num", (getter)vring_get_num, NULL, NULL, NULL},                              \
    {"mask", (getter)vring_get_mask, NULL, NULL, NULL}

/* ---- the receive step both halves share (recv_copies) -------------------------------- */

/* A received buffer's rpmsg header, read from the caller's mapping ``cmap`` at ``off``
 * (``length`` bytes valid there; the header only if it holds one: ``*has``): -1
 * (ValueError, as the Python halves' _outside) if the buffer does not lie inside. */
static int rx_header(PyObject *cmap, Py_ssize_t off, Py_ssize_t length, int *has,
                     uint32_t *src, uint32_t *dst, uint32_t *ln) {
    Py_buffer mb;
    if (PyObject_GetBuffer(cmap, &mb, PyBUF_SIMPLE) < 0) return -1;
    if (off < 0 || off + length > mb.len) {
        PyErr_Format(PyExc_ValueError, "a buffer at offset %zd of %zd bytes lies outside the "
                     "window of %zd bytes", off, length, mb.len);
        PyBuffer_Release(&mb);
        return -1;
    }
    *has = length >= RPMSG_HDR_SIZE;
    if (*has) {
        const uint8_t *p = (const uint8_t *)mb.buf + off;
        uint16_t l;
        memcpy(src, p, 4);
        memcpy(dst, p + 4, 4);
        memcpy(&l, p + 12, 2);
        *ln = l;
    }
    PyBuffer_Release(&mb);
    return 0;
}

/* The endpoint of ``endpoints`` for ``dst`` (a new reference), NULL if none (or -1
 * raised: ``*failed``). */
static PyObject *rx_endpoint(PyObject *endpoints, uint32_t dst, int *failed) {
    PyObject *key = PyLong_FromUnsignedLong(dst);
    *failed = key == NULL;
    if (key == NULL) return NULL;
    PyObject *ept = PyDict_GetItemWithError(endpoints, key);
    Py_DECREF(key);
    if (ept == NULL) *failed = PyErr_Occurred() != NULL;
    Py_XINCREF(ept);
    return ept;
}

/* 1 if ``ept``'s attribute ``name`` is true (``zero_copy``) or, with ``not_none``, is not
 * None (``callback``); -1 raised. */
static int rx_flag(PyObject *ept, PyObject *name, int not_none) {
    PyObject *v = PyObject_GetAttr(ept, name);
    if (v == NULL) return -1;
    int yes = not_none ? v != Py_None : PyObject_IsTrue(v);
    Py_DECREF(v);
    return yes;
}

/* ``more()`` when a receiver that runs no callback reaches a message for an endpoint
 * with one: 1 (stop there, the buffer untaken), 0 (go on), -1 raised. */
static int rx_stop_for_callback(PyObject *more, PyObject *ept) {
    if (more == NULL || ept == NULL) return 0;
    int cb = rx_flag(ept, str_callback, 1);
    if (cb <= 0) return cb;
    PyObject *r = PyObject_CallNoArgs(more);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 1;
}

/* The payload of a well-formed message, copied out of ``cmap`` (bounds checked by
 * rx_header on the same call's mapping: checked again, Python ran since). */
static PyObject *rx_payload(PyObject *cmap, Py_ssize_t off, uint32_t ln) {
    Py_buffer mb;
    if (PyObject_GetBuffer(cmap, &mb, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *payload = NULL;
    if (off + RPMSG_HDR_SIZE + (Py_ssize_t)ln > mb.len)
        PyErr_Format(PyExc_ValueError, "a buffer at offset %zd of %zd bytes lies outside the "
                     "window of %zd bytes", off, RPMSG_HDR_SIZE + (Py_ssize_t)ln, mb.len);
    else
        payload = PyBytes_FromStringAndSize((const char *)mb.buf + off + RPMSG_HDR_SIZE, ln);
    PyBuffer_Release(&mb);
    return payload;
}

/* ``ept.deliver(payload, src)``; -1 raised. */
static int rx_deliver(PyObject *ept, PyObject *payload, uint32_t src) {
    PyObject *src_o = PyLong_FromUnsignedLong(src);
    if (src_o == NULL) return -1;
    PyObject *argv[] = {ept, payload, src_o};
    PyObject *r = PyObject_VectorcallMethod(str_deliver, argv,
                                            3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(src_o);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

/* ``dispatch(off, length, token)``: 1 if the receiver holds the buffer, 0, -1 raised. */
static int rx_dispatch(PyObject *dispatch, Py_ssize_t off, unsigned long length,
                       long long token) {
    PyObject *r = PyObject_CallFunction(dispatch, "nkL", off, length, token);
    if (r == NULL) return -1;
    int held = PyObject_IsTrue(r);
    Py_DECREF(r);
    return held;
}

/* ``kick()`` after a batch whose answer was yes; the notification is then sent. */
static int rx_kick(Vring *r, PyObject *kick) {
    PyObject *res = PyObject_CallNoArgs(kick);
    if (res == NULL) return -1;
    Py_DECREF(res);
    r->owed = 0;
    return 0;
}

/* ---- the driver half ---------------------------------------------------------------- */

typedef struct {
    Vring r;
    uint16_t *free;      /* stack of free descriptors; the top is free[nfree - 1] */
    unsigned nfree;
    long long *tokens;   /* per descriptor: the caller's token, -1 when not outstanding */
    uint32_t *lens;      /* what each outstanding buffer can hold (a private copy) */
    uint64_t *addrs;     /* what each descriptor holds now (addr_known) */
    uint8_t *addr_known;
    int *flags;          /* what each descriptor's flags are now, -1 unknown */
    uint16_t avail_idx;
    uint16_t last_used;
    long long *s_tok;    /* scratch for a batch (num entries; calls hold the GIL) */
    uint32_t *s_wr;
    int *s_desc;
} Driver;

static void driver_free_arrays(Driver *self) {
    PyMem_Free(self->free);
    PyMem_Free(self->tokens);
    PyMem_Free(self->lens);
    PyMem_Free(self->addrs);
    PyMem_Free(self->addr_known);
    PyMem_Free(self->flags);
    PyMem_Free(self->s_tok);
    PyMem_Free(self->s_wr);
    PyMem_Free(self->s_desc);
    self->s_tok = NULL;
    self->s_wr = NULL;
    self->s_desc = NULL;
    self->free = NULL;
    self->tokens = NULL;
    self->lens = NULL;
    self->addrs = NULL;
    self->addr_known = NULL;
    self->flags = NULL;
}

static int Driver_init(Driver *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"window", "parts", "name", NULL};
    PyObject *window, *parts, *name;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO", kwlist, &window, &parts, &name))
        return -1;
    if (self->r.ready || self->r.num) {
        PyErr_SetString(PyExc_TypeError, "a virtqueue is initialised once");
        return -1;
    }
    if (vring_init_views(&self->r, window, parts, name) < 0) return -1;
    unsigned n = self->r.num;
    driver_free_arrays(self);
    self->free = ALLOC(uint16_t, n);
    self->tokens = ALLOC(long long, n);
    self->lens = ALLOC(uint32_t, n);
    self->addrs = ALLOC(uint64_t, n);
    self->addr_known = ALLOC(uint8_t, n);
    self->flags = ALLOC(int, n);
    self->s_tok = ALLOC(long long, n);
    self->s_wr = ALLOC(uint32_t, n);
    self->s_desc = ALLOC(int, n);
    if (!self->free || !self->tokens || !self->lens || !self->addrs || !self->addr_known ||
        !self->flags || !self->s_tok || !self->s_wr || !self->s_desc) {
        PyErr_NoMemory();
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        self->free[i] = (uint16_t)(n - 1 - i);  /* descriptor 0 first */
        self->tokens[i] = -1;
        self->lens[i] = 0;
        self->addrs[i] = 0;
        self->addr_known[i] = 0;
        self->flags[i] = -1;
    }
    self->nfree = n;
    self->avail_idx = 0;
    self->last_used = 0;
    self->r.ready = 1;
    return 0;
}

static int Driver_traverse(Driver *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    return vring_traverse(&self->r, visit, arg);
}

static int Driver_clear(Driver *self) { return vring_clear(&self->r); }

static void Driver_dealloc(Driver *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Driver_clear(self);
    driver_free_arrays(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *Driver_reset_ring(Driver *self, PyObject *Py_UNUSED(ignored)) {
    READY_OR(self, NULL)
    PyObject *views[] = {self->r.desc_q, self->r.avail, self->r.used_h, self->r.used_e};
    for (int i = 0; i < 4; i++) {
        uint8_t *p = mv_ptr(views[i]);
        if (p == NULL) return NULL;
        memset(p, 0, (size_t)((PyMemoryViewObject *)views[i])->view.len);
    }
    for (unsigned i = 0; i < self->r.num; i++) {
        self->addrs[i] = 0;
        self->addr_known[i] = 1;
        self->flags[i] = 0;
    }
    Py_RETURN_NONE;
}

static PyObject *Driver_get_num_free(Driver *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLong(self->nfree);
}

/* The kick answer after a publish (kick_needed): fence, then the device's flag. */
static int driver_kick_answer(Driver *self, const uint8_t *used_h) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    int kick = self->r.owed || !(ld16(used_h) & VRING_USED_F_NO_NOTIFY);
    self->r.owed = kick;
    return kick;
}

/* Post one buffer (checked by the caller: a free descriptor exists). */
static int driver_post(Driver *self, uint8_t *desc, uint8_t *avail, uint64_t addr,
                       uint32_t length, int writable, long long token) {
    uint16_t d = self->free[--self->nfree];
    if (!self->addr_known[d] || self->addrs[d] != addr) {
        st64(desc + 16 * d, addr);
        self->addrs[d] = addr;
        self->addr_known[d] = 1;
    }
    int flags = writable ? VRING_DESC_F_WRITE : 0;
    if (self->flags[d] != flags) {
        st16(desc + 16 * d + 12, (uint16_t)flags);  /* next stays 0 (no chains) */
        self->flags[d] = flags;
    }
    st32(desc + 16 * d + 8, length);
    self->tokens[d] = token;
    self->lens[d] = length;
    uint16_t ai = self->avail_idx;
    st16(avail + 4 + 2 * (ai & self->r.mask), d);
    ai = (uint16_t)(ai + 1);
    self->avail_idx = ai;
    BARRIER();
    st16(avail + 2, ai);  /* publish: the entry above is written first (x86 TSO) */
    BARRIER();
    return d;
}

static PyObject *Driver_add(Driver *self, PyObject *args, PyObject *kwds) {
    READY_OR(self, NULL)
    static char *kwlist[] = {"addr", "length", "writable", "token", "kick_needed", NULL};
    PyObject *addr_o, *length_o, *token_o;
    unsigned long long addr, length, token;
    int writable, kick_needed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOpO|$p", kwlist, &addr_o, &length_o,
                                     &writable, &token_o, &kick_needed))
        return NULL;
    if (self->r.broken != Py_None) {
        raise_broken(self->r.broken);
        return NULL;
    }
    if (in_range(addr_o, UINT64_MAX, "address", &addr) < 0 ||
        in_range(length_o, UINT32_MAX, "length", &length) < 0 ||
        in_range(token_o, INT64_MAX, "token", &token) < 0)
        return NULL;
    if (self->nfree == 0) {
        PyObject *err = PyObject_CallFunction(VirtqueueError, "Os", self->r.name,
                                              "no free descriptor (ring full)");
        if (err != NULL) {
            PyErr_SetObject(VirtqueueError, err);
            Py_DECREF(err);
        }
        return NULL;
    }
    uint8_t *desc = mv_ptr(self->r.desc_q), *avail = mv_ptr(self->r.avail);
    uint8_t *used_h = mv_ptr(self->r.used_h);
    if (!desc || !avail || !used_h) return NULL;
    int d = driver_post(self, desc, avail, addr, (uint32_t)length, writable, (long long)token);
    int kick = kick_needed ? driver_kick_answer(self, used_h) : 0;
    /* (traced last: the tracer runs Python, in which another thread may unmap) */
    if (tracing() && trace(str_add, self->r.name, d, length) < 0) return NULL;
    return PyBool_FromLong(kick);
}

static PyObject *Driver_kick_needed(Driver *self, PyObject *Py_UNUSED(ignored)) {
    READY_OR(self, NULL)
    uint8_t *used_h = mv_ptr(self->r.used_h);
    if (used_h == NULL) return NULL;
    return PyBool_FromLong(driver_kick_answer(self, used_h));
}

static PyObject *Driver_has_used(Driver *self, PyObject *Py_UNUSED(ignored)) {
    READY_OR(self, NULL)
    uint8_t *used_h = mv_ptr(self->r.used_h);
    if (used_h == NULL) return NULL;
    return PyBool_FromLong(ld16(used_h + 2) != self->last_used);
}

static PyObject *driver_used_error(Driver *self, uint32_t d, uint32_t written) {
    if (d >= self->r.num)
        return PyUnicode_FromFormat("used id %u is out of range (num %u)", d, self->r.num);
    if (self->tokens[d] == -1)
        return PyUnicode_FromFormat("device returned descriptor %u, which was not outstanding",
                                    d);
    return PyUnicode_FromFormat("device wrote %u bytes into descriptor %u of %u bytes", written,
                                d, self->lens[d]);
}

static PyObject *driver_used_jump(Driver *self, uint16_t lu, uint16_t ui) {
    return vring_break(
        &self->r,
        PyUnicode_FromFormat("used index moved from %u to %u (%u entries) but only %u buffers "
                             "are outstanding",
                             lu, ui, (unsigned)(uint16_t)(ui - lu), self->r.num - self->nfree));
}

/* Take up to ``limit`` used buffers: their tokens and lengths into ``tok``/``wr``.
 * Returns how many (0: none), or -1 with the queue broken (nothing taken). */
static Py_ssize_t driver_take(Driver *self, Py_ssize_t limit, long long *tok, uint32_t *wr,
                              int *descs) {
    if ((self->r.broken != Py_None || self->r.break_next != Py_None) &&
        vring_check_take(&self->r) < 0)
        return -1;
    uint8_t *used_h = mv_ptr(self->r.used_h), *used_e = mv_ptr(self->r.used_e);
    if (!used_h || !used_e) return -1;
    uint16_t lu = self->last_used;
    uint16_t ui = ld16(used_h + 2);
    BARRIER();
    if (ui == lu) return 0;
    unsigned count = (uint16_t)(ui - lu);
    if (count > self->r.num - self->nfree) {
        driver_used_jump(self, lu, ui);
        return -1;
    }
    Py_ssize_t got = 0;
    Py_ssize_t want = (Py_ssize_t)count < limit ? (Py_ssize_t)count : limit;
    while (got < want) {
        unsigned slot = 8 * (lu & self->r.mask);
        uint32_t d = ld32(used_e + slot);
        uint32_t written = ld32(used_e + slot + 4);
        if (d >= self->r.num || self->tokens[d] == -1 || written > self->lens[d]) {
            PyObject *msg = driver_used_error(self, d, written);
            if (got) {
                if (msg == NULL) return -1;
                Py_XSETREF(self->r.break_next, msg);
                break;  /* returned first; the next call breaks on it */
            }
            vring_break(&self->r, msg);
            return -1;
        }
        tok[got] = self->tokens[d];
        wr[got] = written;
        descs[got] = (int)d;
        self->tokens[d] = -1;
        self->free[self->nfree++] = (uint16_t)d;
        lu = (uint16_t)(lu + 1);
        got++;
    }
    self->last_used = lu;
    return got;
}

static PyObject *Driver_get(Driver *self, PyObject *Py_UNUSED(ignored)) {
    READY_OR(self, NULL)
    long long tok;
    uint32_t wr;
    int d;
    Py_ssize_t n = driver_take(self, 1, &tok, &wr, &d);
    if (n < 0) return NULL;
    if (n == 0) Py_RETURN_NONE;
    if (tracing() && trace(str_get, self->r.name, d, wr) < 0) return NULL;
    return Py_BuildValue("(LI)", tok, wr);
}

static PyObject *Driver_get_many(Driver *self, PyObject *args, PyObject *kwds) {
    READY_OR(self, NULL)
    static char *kwlist[] = {"limit", NULL};
    PyObject *limit_o = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O", kwlist, &limit_o)) return NULL;
    Py_ssize_t limit = limit_o ? PyNumber_AsSsize_t(limit_o, NULL) : 0xFFFF;  /* (clipped) */
    if (limit == -1 && PyErr_Occurred()) return NULL;
    if (limit > (Py_ssize_t)self->r.num) limit = self->r.num;
    if (limit < 0) limit = 0;
    long long *tok = self->s_tok;
    uint32_t *wr = self->s_wr;
    int *descs = self->s_desc;
    Py_ssize_t n = driver_take(self, limit, tok, wr, descs);
    if (n < 0) return NULL;
    PyObject *list = PyList_New(n);
    if (list == NULL) return NULL;
    int on = n ? tracing() : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = Py_BuildValue("(LI)", tok[i], wr[i]);
        if (item == NULL || (on && trace(str_get, self->r.name, descs[i], wr[i]) < 0)) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *Driver_outstanding_tokens(Driver *self, PyObject *Py_UNUSED(ignored)) {
    READY_OR(self, NULL)
    PyObject *list = PyList_New(0);
    if (list == NULL) return NULL;
    for (unsigned i = 0; i < self->r.num; i++) {
        if (self->tokens[i] == -1) continue;
        PyObject *t = PyLong_FromLongLong(self->tokens[i]);
        if (t == NULL || PyList_Append(list, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(t);
    }
    return list;
}

static PyObject *Driver_disable_cb(Driver *self, PyObject *Py_UNUSED(ignored)) {
    READY_OR(self, NULL)
    uint8_t *avail = mv_ptr(self->r.avail);
    if (avail == NULL) return NULL;
    st16(avail, VRING_AVAIL_F_NO_INTERRUPT);
    Py_RETURN_NONE;
}

static PyObject *Driver_enable_cb(Driver *self, PyObject *Py_UNUSED(ignored)) {
    READY_OR(self, NULL)
    uint8_t *avail = mv_ptr(self->r.avail), *used_h = mv_ptr(self->r.used_h);
    if (!avail || !used_h) return NULL;
    st16(avail, 0);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return PyBool_FromLong(ld16(used_h + 2) != self->last_used);
}


/* An rpmsg address (u32) from ``v``; -1 if it is not one: TypeError, OverflowError
 * (the texts of the Python halves' rpmsg_header). */
static int as_addr(PyObject *v, uint32_t *addr) {
    if (!PyLong_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "an rpmsg address is an integer");
        return -1;
    }
    int overflow;
    long long a = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (a == -1 && PyErr_Occurred()) return -1;
    if (overflow || a < 0 || a > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "an rpmsg address is 32 bits");
        return -1;
    }
    *addr = (uint32_t)a;
    return 0;
}

/* Copy an rpmsg header (struct rpmsg_hdr: src, dst, reserved 0, len, flags 0, native
 * order as wire.rpmsg.RPMSG_HDR) then ``data`` into the window at ``off``; -1
 * (ValueError) if it does not lie inside ``mem``. */
static int copy_out(Py_buffer *mem, Py_ssize_t off, uint32_t src, uint32_t dst, Py_buffer *data) {
    if (off < 0 || RPMSG_HDR_SIZE + data->len > mem->len - off) {
        PyErr_Format(PyExc_ValueError, "a buffer at offset %zd of %zd bytes lies outside the "
                     "window of %zd bytes", off, RPMSG_HDR_SIZE + data->len, mem->len);
        return -1;
    }
    uint8_t hdr[RPMSG_HDR_SIZE] = {0};
    uint16_t len = (uint16_t)data->len;
    memcpy(hdr, &src, 4);
    memcpy(hdr + 4, &dst, 4);
    memcpy(hdr + 12, &len, 2);
    memmove((uint8_t *)mem->buf + off, hdr, RPMSG_HDR_SIZE);
    memmove((uint8_t *)mem->buf + off + RPMSG_HDR_SIZE, data->buf, (size_t)data->len);
    return 0;
}

/* The message's payload (``data``) as one contiguous run of bytes, then its addresses:
 * -1 (the errors of the Python halves' rpmsg_payload, then of rpmsg_header, in that
 * order) if it cannot go; else ``data`` holds the buffer (to release). */
static int get_payload(PyObject *v, PyObject *src_o, PyObject *dst_o, Py_buffer *data,
                       uint32_t *src, uint32_t *dst) {
    if (!PyObject_CheckBuffer(v)) {
        PyErr_Format(PyExc_TypeError, "a payload is a bytes-like object, not '%.100s'",
                     Py_TYPE(v)->tp_name);
        return -1;
    }
    if (PyObject_GetBuffer(v, data, PyBUF_SIMPLE) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_BufferError)) return -1;
        PyErr_SetString(PyExc_BufferError, "a payload is one contiguous run of bytes, not a "
                                           "strided view: copy it");
        return -1;
    }
    if (!PyLong_Check(src_o) || !PyLong_Check(dst_o)) {  /* (both first, as rpmsg_header) */
        PyErr_SetString(PyExc_TypeError, "an rpmsg address is an integer");
        PyBuffer_Release(data);
        return -1;
    }
    if (as_addr(src_o, src) < 0 || as_addr(dst_o, dst) < 0) {
        PyBuffer_Release(data);
        return -1;
    }
    if (data->len > UINT16_MAX) {
        PyErr_Format(PyExc_ValueError, "a payload of %zd bytes is longer than an rpmsg "
                     "header can say", data->len);
        PyBuffer_Release(data);
        return -1;
    }
    return 0;
}

static PyObject *Driver_send_copy(Driver *self, PyObject *const *args, Py_ssize_t nargs) {
    READY_OR(self, NULL)
    Py_buffer mem, data;
    Py_ssize_t off0, stride, da_to_off;
    uint32_t src, dst;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "send_copy(mem, src, dst, data, off0, stride, da_to_off)");
        return NULL;
    }
    off0 = PyLong_AsSsize_t(args[4]);
    stride = PyLong_AsSsize_t(args[5]);
    da_to_off = PyLong_AsSsize_t(args[6]);
    if (PyErr_Occurred()) return NULL;
    if (get_payload(args[3], args[1], args[2], &data, &src, &dst) < 0) return NULL;
    if (PyObject_GetBuffer(args[0], &mem, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    PyObject *result = NULL;
    long long tok;
    uint32_t wr;
    int d;
    Py_ssize_t n = driver_take(self, 1, &tok, &wr, &d);
    if (n < 0) goto done;
    if (n == 0) {
        result = PyLong_FromLong(SEND_NO_BUFFER);
        goto done;
    }
    int got_desc = d;
    Py_ssize_t off = off0 + (Py_ssize_t)tok * stride;
    uint8_t *desc = mv_ptr(self->r.desc_q), *avail = mv_ptr(self->r.avail);
    uint8_t *used_h = mv_ptr(self->r.used_h);
    /* (the offset follows from a token of this queue's own: a bad one is the caller's
     * bug, not the device's doing) */
    if (!desc || !avail || !used_h || copy_out(&mem, off, src, dst, &data) < 0) goto done;
    uint32_t length = (uint32_t)(RPMSG_HDR_SIZE + data.len);
    if (off - da_to_off < 0) {
        PyErr_Format(PyExc_ValueError, "address %zd is out of range [0, %llu]", off - da_to_off,
                     (unsigned long long)UINT64_MAX);
        goto done;
    }
    d = driver_post(self, desc, avail, (uint64_t)(off - da_to_off), length, 0, tok);
    result = PyLong_FromLong(driver_kick_answer(self, used_h));
    PyBuffer_Release(&data);
    PyBuffer_Release(&mem);
    /* (traced last: the tracer runs Python, in which another thread may unmap) */
    if (result != NULL && tracing() &&
        (trace(str_get, self->r.name, got_desc, wr) < 0 ||
         trace(str_add, self->r.name, d, length) < 0))
        Py_CLEAR(result);
    return result;
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&mem);
    return result;
}

/* Post receive buffer ``token`` again at ``da + token * size`` (as add(), writable). */
static int driver_repost(Driver *self, long long da, long long token, Py_ssize_t size,
                         int traced) {
    long long addr = da + token * (long long)size;
    if (addr < 0 || size < 0 || size > (Py_ssize_t)UINT32_MAX) {
        if (addr < 0)
            PyErr_Format(PyExc_ValueError, "address %lld is out of range [0, %llu]", addr,
                         (unsigned long long)UINT64_MAX);
        else
            PyErr_Format(PyExc_ValueError, "length %zd is out of range [0, %lu]", size,
                         (unsigned long)UINT32_MAX);
        return -1;
    }
    if (self->nfree == 0) {  /* (not reached: the buffer was just taken) */
        PyErr_SetString(PyExc_ValueError, "no free descriptor");
        return -1;
    }
    uint8_t *desc = mv_ptr(self->r.desc_q), *avail = mv_ptr(self->r.avail);
    if (!desc || !avail) return -1;
    int d = driver_post(self, desc, avail, (uint64_t)addr, (uint32_t)size, 1, token);
    if (traced && trace(str_add, self->r.name, d, (unsigned long long)size) < 0) return -1;
    return 0;
}

static PyObject *Driver_recv_copies(Driver *self, PyObject *const *args, Py_ssize_t nargs) {
    READY_OR(self, NULL)
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "recv_copies(cmap, base, da, size, endpoints, "
                                         "dispatch, kick, more)");
        return NULL;
    }
    PyObject *cmap = args[0], *endpoints = args[4], *dispatch = args[5], *kick = args[6];
    PyObject *more = args[7] == Py_None ? NULL : args[7];
    Py_ssize_t base = PyLong_AsSsize_t(args[1]);
    long long da = PyLong_AsLongLong(args[2]);
    Py_ssize_t size = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred()) return NULL;
    if (!PyDict_Check(endpoints)) {
        PyErr_SetString(PyExc_TypeError, "endpoints must be a dict");
        return NULL;
    }
    if ((self->r.broken != Py_None || self->r.break_next != Py_None) &&
        vring_check_take(&self->r) < 0)
        return NULL;
    uint8_t *used_h = mv_ptr(self->r.used_h);
    if (used_h == NULL) return NULL;
    uint16_t lu = self->last_used;
    uint16_t ui = ld16(used_h + 2);
    BARRIER();
    if (ui == lu) return PyLong_FromLong(0);
    unsigned count = (uint16_t)(ui - lu);
    if (count > self->r.num - self->nfree) return driver_used_jump(self, lu, ui);
    int traced = tracing();
    unsigned taken = 0;
    int posted = 0;
    while (taken < count) {
        uint8_t *used_e = mv_ptr(self->r.used_e);  /* (again: Python ran since) */
        if (used_e == NULL) goto fail;
        unsigned slot = 8 * (lu & self->r.mask);
        uint32_t d = ld32(used_e + slot);
        uint32_t written = ld32(used_e + slot + 4);
        if (d >= self->r.num || self->tokens[d] == -1 || written > self->lens[d]) {
            PyObject *msg = driver_used_error(self, d, written);
            if (taken) {
                if (msg == NULL) goto fail;
                Py_XSETREF(self->r.break_next, msg);
                break;  /* the next call breaks on it */
            }
            vring_break(&self->r, msg);
            goto fail;
        }
        long long token = self->tokens[d];
        Py_ssize_t off = base + (Py_ssize_t)token * size;
        int has, failed, rc;
        uint32_t src = 0, dst = 0, ln = 0;
        if (rx_header(cmap, off, written, &has, &src, &dst, &ln) < 0) goto fail;
        PyObject *ept = has ? rx_endpoint(endpoints, dst, &failed) : NULL;
        if (has && failed) goto fail;
        if ((rc = rx_stop_for_callback(more, ept)) != 0) {
            Py_XDECREF(ept);
            if (rc < 0) goto fail;
            break;  /* left on the ring, untaken */
        }
        self->tokens[d] = -1;
        self->free[self->nfree++] = (uint16_t)d;
        lu = (uint16_t)(lu + 1);
        self->last_used = lu;
        taken++;
        if (traced && trace(str_get, self->r.name, (long)d, written) < 0) goto fail_ept;
        int fast = 0;
        if (written && !traced && ept != NULL && ln <= written - RPMSG_HDR_SIZE) {
            int zc = rx_flag(ept, str_zero_copy, 0);
            if (zc < 0) goto fail_ept;
            fast = !zc;
        }
        if (!written) {
            posted = 1;
            if (driver_repost(self, da, token, size, traced) < 0) goto fail_ept;
        } else if (fast) {
            PyObject *payload = rx_payload(cmap, off, ln);
            if (payload == NULL) goto fail_ept;
            posted = 1;
            if (driver_repost(self, da, token, size, traced) < 0 ||
                rx_deliver(ept, payload, src) < 0) {
                Py_DECREF(payload);
                goto fail_ept;
            }
            Py_DECREF(payload);
        } else {
            int held = rx_dispatch(dispatch, off, written, token);
            if (held < 0) goto fail_ept;
            if (!held) {
                posted = 1;
                if (driver_repost(self, da, token, size, traced) < 0) goto fail_ept;
            }
        }
        Py_XDECREF(ept);
        continue;
    fail_ept:
        Py_XDECREF(ept);
        goto fail;
    }
    if (taken) {
        if ((used_h = mv_ptr(self->r.used_h)) == NULL) goto fail;
        if (driver_kick_answer(self, used_h) && rx_kick(&self->r, kick) < 0) return NULL;
    }
    return PyLong_FromUnsignedLong(taken);
fail:
    if (posted) self->r.owed = 1;
    return NULL;
}

static PyMethodDef Driver_methods[] = {
    {"notified", (PyCFunction)vring_notified, METH_NOARGS, NULL},
    {"reset_ring", (PyCFunction)Driver_reset_ring, METH_NOARGS, NULL},
    {"add", (PyCFunction)(void (*)(void))Driver_add, METH_VARARGS | METH_KEYWORDS, NULL},
    {"kick_needed", (PyCFunction)Driver_kick_needed, METH_NOARGS, NULL},
    {"has_used", (PyCFunction)Driver_has_used, METH_NOARGS, NULL},
    {"get", (PyCFunction)Driver_get, METH_NOARGS, NULL},
    {"get_many", (PyCFunction)(void (*)(void))Driver_get_many, METH_VARARGS | METH_KEYWORDS,
     NULL},
    {"outstanding_tokens", (PyCFunction)Driver_outstanding_tokens, METH_NOARGS, NULL},
    {"disable_cb", (PyCFunction)Driver_disable_cb, METH_NOARGS, NULL},
    {"enable_cb", (PyCFunction)Driver_enable_cb, METH_NOARGS, NULL},
    {"send_copy", (PyCFunction)(void (*)(void))Driver_send_copy, METH_FASTCALL, NULL},
    {"recv_copies", (PyCFunction)(void (*)(void))Driver_recv_copies, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Driver_members[] = {VRING_MEMBERS, {NULL, 0, 0, 0, NULL}};

static PyGetSetDef Driver_getsets[] = {
    VRING_GETSETS,
    {"num_free", (getter)Driver_get_num_free, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Driver_slots[] = {
    {Py_tp_doc, "The driver half of a split virtqueue, compiled (see "
                "amplink.virtio.virtqueue.VirtqueueDriver)."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, Driver_init},
    {Py_tp_dealloc, Driver_dealloc},
    {Py_tp_traverse, Driver_traverse},
    {Py_tp_clear, Driver_clear},
    {Py_tp_methods, Driver_methods},
    {Py_tp_members, Driver_members},
    {Py_tp_getset, Driver_getsets},
    {0, NULL},
};

static PyType_Spec Driver_spec = {
    .name = "amplink.virtio._vring.VirtqueueDriver",
    .basicsize = sizeof(Driver),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = Driver_slots,
};

/* ---- the device half ---------------------------------------------------------------- */

typedef struct {
    Vring r;
    PyObject *translate;  /* (addr, len) -> offset, raising AddressError */
    uint8_t *held;
    uint32_t *held_len;
    unsigned held_count;
    uint64_t *x_addr;     /* per descriptor: the last (address, length) translated */
    uint32_t *x_len;
    Py_ssize_t *x_off;    /* and where it lies; x_known says whether it is filled */
    uint8_t *x_known;
    uint16_t last_avail;
    uint16_t used_idx;
    uint16_t want_write;
    int whole_used;
    unsigned *s_heads;    /* scratch for a batch (num entries; calls hold the GIL) */
    Py_ssize_t *s_offs;
    uint32_t *s_lens;
    long long *s_put;
    long long *s_done;    /* a receive step's buffers to give back (num entries) */
} Device;

static void device_free_arrays(Device *self) {
    PyMem_Free(self->held);
    PyMem_Free(self->held_len);
    PyMem_Free(self->x_addr);
    PyMem_Free(self->x_len);
    PyMem_Free(self->x_off);
    PyMem_Free(self->x_known);
    PyMem_Free(self->s_heads);
    PyMem_Free(self->s_offs);
    PyMem_Free(self->s_lens);
    PyMem_Free(self->s_put);
    PyMem_Free(self->s_done);
    self->s_done = NULL;
    self->s_heads = NULL;
    self->s_offs = NULL;
    self->s_lens = NULL;
    self->s_put = NULL;
    self->held = NULL;
    self->held_len = NULL;
    self->x_addr = NULL;
    self->x_len = NULL;
    self->x_off = NULL;
    self->x_known = NULL;
}

static int Device_init(Device *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"window", "parts", "name", "translate", "writable",
                             "whole_used_len", NULL};
    PyObject *window, *parts, *name, *translate;
    int writable = -1, whole_used_len = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO|$pp", kwlist, &window, &parts, &name,
                                     &translate, &writable, &whole_used_len))
        return -1;
    if (writable < 0) {
        PyErr_SetString(PyExc_TypeError, "missing required keyword-only argument: 'writable'");
        return -1;
    }
    if (!PyCallable_Check(translate)) {
        PyErr_SetString(PyExc_TypeError, "translate must be callable");
        return -1;
    }
    if (self->r.ready || self->r.num) {
        PyErr_SetString(PyExc_TypeError, "a virtqueue is initialised once");
        return -1;
    }
    if (vring_init_views(&self->r, window, parts, name) < 0) return -1;
    Py_INCREF(translate);
    Py_XSETREF(self->translate, translate);
    unsigned n = self->r.num;
    device_free_arrays(self);
    self->held = ALLOC(uint8_t, n);
    self->held_len = ALLOC(uint32_t, n);
    self->x_addr = ALLOC(uint64_t, n);
    self->x_len = ALLOC(uint32_t, n);
    self->x_off = ALLOC(Py_ssize_t, n);
    self->x_known = ALLOC(uint8_t, n);
    self->s_heads = ALLOC(unsigned, n);
    self->s_offs = ALLOC(Py_ssize_t, n);
    self->s_lens = ALLOC(uint32_t, n);
    self->s_put = ALLOC(long long, n + 1);  /* (one more: see Device_put_many) */
    self->s_done = ALLOC(long long, n);
    if (!self->held || !self->held_len || !self->x_addr || !self->x_len || !self->x_off ||
        !self->x_known || !self->s_heads || !self->s_offs || !self->s_lens || !self->s_put ||
        !self->s_done) {
        PyErr_NoMemory();
        return -1;
    }
    memset(self->held, 0, n);
    memset(self->held_len, 0, n * sizeof(uint32_t));
    memset(self->x_known, 0, n);
    self->held_count = 0;
    self->last_avail = 0;
    self->used_idx = 0;
    self->want_write = writable ? VRING_DESC_F_WRITE : 0;
    self->whole_used = whole_used_len && !writable;
    self->r.ready = 1;
    return 0;
}

static int Device_traverse(Device *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->translate);
    return vring_traverse(&self->r, visit, arg);
}

static int Device_clear(Device *self) {
    Py_CLEAR(self->translate);
    return vring_clear(&self->r);
}

static void Device_dealloc(Device *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Device_clear(self);
    device_free_arrays(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *Device_has_avail(Device *self, PyObject *Py_UNUSED(ignored)) {
    READY_OR(self, NULL)
    uint8_t *avail = mv_ptr(self->r.avail);
    if (avail == NULL) return NULL;
    return PyBool_FromLong(ld16(avail + 2) != self->last_avail);
}

static PyObject *device_avail_jump(Device *self, uint16_t la, uint16_t ai) {
    return vring_break(
        &self->r,
        PyUnicode_FromFormat("avail index moved from %u to %u (%u entries) but the driver can "
                             "only have %u buffers available",
                             la, ai, (unsigned)(uint16_t)(ai - la),
                             self->r.num - self->held_count));
}

static PyObject *device_bad_head(Device *self, unsigned head) {
    if (head >= self->r.num)
        return PyUnicode_FromFormat("avail ring names descriptor %u, out of range (num %u)",
                                    head, self->r.num);
    return PyUnicode_FromFormat("descriptor %u made available again while the device holds it",
                                head);
}

/* What is wrong with descriptor ``head``'s ``flags``; Py_None if nothing (new refs). */
static PyObject *device_flags_error(Device *self, unsigned head, unsigned flags) {
    if (flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT)) {
        char hex[16];
        snprintf(hex, sizeof hex, "%#x", flags);
        return PyUnicode_FromFormat("descriptor %u has flags %s: chained and indirect "
                                    "descriptors are not supported",
                                    head, hex);
    }
    if ((flags & VRING_DESC_F_WRITE) == self->want_write) Py_RETURN_NONE;
    const char *got = self->want_write == 0 ? "writable" : "readable";
    const char *want = self->want_write == 0 ? "readable" : "writable";
    return PyUnicode_FromFormat("descriptor %u is device-%s but this queue carries device-%s "
                                "buffers",
                                head, got, want);
}

/* Where descriptor ``head``'s buffer lies (the cache, else translate()); -1 with
 * ``*error`` set to what is wrong (a new str), or -2 with an exception raised. */
static Py_ssize_t device_translate(Device *self, unsigned head, uint64_t addr, uint32_t length,
                                   PyObject **error) {
    if (self->x_known[head] && self->x_addr[head] == addr && self->x_len[head] == length)
        return self->x_off[head];
    PyObject *off = PyObject_CallFunction(self->translate, "KI", (unsigned long long)addr,
                                          length);
    if (off == NULL) {
        if (!PyErr_ExceptionMatches(AddressError)) return -2;
        PyObject *type, *exc, *tb;
        PyErr_Fetch(&type, &exc, &tb);
        PyErr_NormalizeException(&type, &exc, &tb);
        PyObject *why = exc ? PyObject_GetAttr(exc, str_strerror) : NULL;
        Py_XDECREF(type);
        Py_XDECREF(exc);
        Py_XDECREF(tb);
        if (why == NULL) return -2;
        *error = PyUnicode_FromFormat("descriptor %u: %S", head, why);
        Py_DECREF(why);
        return *error == NULL ? -2 : -1;
    }
    Py_ssize_t o = PyLong_AsSsize_t(off);
    Py_DECREF(off);
    if (o == -1 && PyErr_Occurred()) return -2;
    if (o < 0) {
        PyErr_Format(PyExc_ValueError, "translate() gave the negative offset %zd", o);
        return -2;
    }
    self->x_addr[head] = addr;
    self->x_len[head] = length;
    self->x_off[head] = o;
    self->x_known[head] = 1;
    return o;
}

/* The next available buffer, looked at and checked but not taken: 1 with ``*head``,
 * ``*off``, ``*len`` (``*la`` the avail index it came from), 0 if none, -1 with an
 * exception raised; a bad entry sets ``*error`` (a new str, the queue not broken yet)
 * and returns -1 with no exception. */
static int device_look(Device *self, uint8_t *avail, uint8_t *desc, uint16_t la, uint16_t ai,
                       unsigned *headp, Py_ssize_t *offp, uint32_t *lenp, PyObject **error) {
    (void)ai;
    unsigned head = ld16(avail + 4 + 2 * (la & self->r.mask));
    if (head >= self->r.num || self->held[head]) {
        *error = device_bad_head(self, head);
        return -1;
    }
    unsigned flags = ld16(desc + 16 * head + 12);  /* read once: the driver may flip it */
    if (flags != self->want_write) {
        PyObject *e = device_flags_error(self, head, flags);
        if (e == NULL) return -1;
        if (e != Py_None) {
            *error = e;
            return -1;
        }
        Py_DECREF(e);
    }
    uint64_t addr = ld64(desc + 16 * head);
    uint32_t length = ld32(desc + 16 * head + 8);
    Py_ssize_t off = device_translate(self, head, addr, length, error);
    if (off < 0) return -1;
    *headp = head;
    *offp = off;
    *lenp = length;
    return 1;
}

static void device_hold(Device *self, unsigned head, uint32_t length) {
    self->held[head] = 1;
    self->held_len[head] = length;
    self->held_count++;
}

/* A batch that ends in an exception takes nothing: its ``got`` holds are undone. */
static void device_untake(Device *self, const unsigned *heads, Py_ssize_t got) {
    for (Py_ssize_t i = 0; i < got; i++) self->held[heads[i]] = 0;
    self->held_count -= (unsigned)got;
}

/* Take up to ``limit`` buffers into heads/offs/lens; how many, or -1 (raised). */
static Py_ssize_t device_take(Device *self, Py_ssize_t limit, unsigned *heads, Py_ssize_t *offs,
                              uint32_t *lens) {
    if ((self->r.broken != Py_None || self->r.break_next != Py_None) &&
        vring_check_take(&self->r) < 0)
        return -1;
    uint8_t *avail = mv_ptr(self->r.avail), *desc = mv_ptr(self->r.desc_q);
    if (!avail || !desc) return -1;
    uint16_t la = self->last_avail;
    uint16_t ai = ld16(avail + 2);
    BARRIER();
    if (ai == la) return 0;
    unsigned count = (uint16_t)(ai - la);
    if (count > self->r.num - self->held_count) {
        device_avail_jump(self, la, ai);
        return -1;
    }
    Py_ssize_t got = 0;
    Py_ssize_t want = (Py_ssize_t)count < limit ? (Py_ssize_t)count : limit;
    while (got < want) {
        PyObject *error = NULL;
        if (got) {  /* (again: a translation runs Python, in which another thread may unmap) */
            avail = mv_ptr(self->r.avail);
            desc = mv_ptr(self->r.desc_q);
            if (!avail || !desc) {
                device_untake(self, heads, got);
                return -1;
            }
        }
        int r = device_look(self, avail, desc, la, ai, &heads[got], &offs[got], &lens[got],
                            &error);
        if (r < 0) {
            if (error == NULL) {  /* raised (translate() failed otherwise, no memory) */
                device_untake(self, heads, got);
                return -1;
            }
            if (got) {
                Py_XSETREF(self->r.break_next, error);
                break;  /* returned first; the next call breaks on it */
            }
            vring_break(&self->r, error);
            return -1;
        }
        device_hold(self, heads[got], lens[got]);
        la = (uint16_t)(la + 1);
        got++;
    }
    self->last_avail = la;
    return got;
}

static PyObject *Device_get(Device *self, PyObject *Py_UNUSED(ignored)) {
    READY_OR(self, NULL)
    unsigned head;
    Py_ssize_t off;
    uint32_t len;
    Py_ssize_t n = device_take(self, 1, &head, &off, &len);
    if (n < 0) return NULL;
    if (n == 0) Py_RETURN_NONE;
    if (tracing() && trace(str_get, self->r.name, head, len) < 0) return NULL;
    return Py_BuildValue("(InI)", head, off, len);
}

static PyObject *Device_get_many(Device *self, PyObject *args, PyObject *kwds) {
    READY_OR(self, NULL)
    static char *kwlist[] = {"limit", NULL};
    PyObject *limit_o = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O", kwlist, &limit_o)) return NULL;
    Py_ssize_t limit = limit_o ? PyNumber_AsSsize_t(limit_o, NULL) : 0xFFFF;  /* (clipped) */
    if (limit == -1 && PyErr_Occurred()) return NULL;
    if (limit > (Py_ssize_t)self->r.num) limit = self->r.num;
    if (limit < 0) limit = 0;
    unsigned *heads = self->s_heads;
    Py_ssize_t *offs = self->s_offs;
    uint32_t *lens = self->s_lens;
    Py_ssize_t n = device_take(self, limit, heads, offs, lens);
    if (n < 0) return NULL;
    PyObject *list = PyList_New(n);
    if (list == NULL) return NULL;
    int on = n ? tracing() : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = Py_BuildValue("(InI)", heads[i], offs[i], lens[i]);
        if (item == NULL || (on && trace(str_get, self->r.name, heads[i], lens[i]) < 0)) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static int device_notify_answer(Device *self, const uint8_t *avail) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    int notify = self->r.owed || !(ld16(avail) & VRING_AVAIL_F_NO_INTERRUPT);
    self->r.owed = notify;
    return notify;
}

/* Return ``count`` held buffers, publishing the used index once; checked first, so a
 * bad head changes nothing (ValueError). */
static int device_put(Device *self, const long long *heads, Py_ssize_t count,
                      long long written, PyObject *written_o) {
    /* Checked first, each head marked 2 as it is seen (a head twice is not held the
     * second time), the marks undone if one is wrong. */
    Py_ssize_t seen = 0;
    for (; seen < count; seen++) {
        long long h = heads[seen];
        if (h < 0 || h >= (long long)self->r.num || self->held[h] != 1) {
            PyErr_Format(PyExc_ValueError, "descriptor %lld is not held by the device", h);
            break;
        }
        long long n = self->whole_used ? (long long)self->held_len[h] : written;
        if (n < 0 || n > (long long)self->held_len[h] || (written_o && !self->whole_used)) {
            if (written_o && !self->whole_used)  /* (an int beyond 64 bits, as given) */
                PyErr_Format(PyExc_ValueError, "written length %R exceeds buffer %u", written_o,
                             self->held_len[h]);
            else
                PyErr_Format(PyExc_ValueError, "written length %lld exceeds buffer %u", n,
                             self->held_len[h]);
            break;
        }
        self->held[h] = 2;
    }
    uint8_t *used_h = NULL, *used_e = NULL;
    if (seen == count) {
        used_h = mv_ptr(self->r.used_h);
        used_e = used_h ? mv_ptr(self->r.used_e) : NULL;
    }
    if (used_e == NULL) {
        for (Py_ssize_t i = 0; i < seen; i++) self->held[heads[i]] = 1;
        return -1;
    }
    uint16_t ui = self->used_idx;
    for (Py_ssize_t i = 0; i < count; i++) {
        long long h = heads[i];
        uint32_t n = self->whole_used ? self->held_len[h] : (uint32_t)written;
        unsigned slot = 8 * (ui & self->r.mask);
        st32(used_e + slot, (uint32_t)h);
        st32(used_e + slot + 4, n);
        self->held[h] = 0;
        self->held_count--;
        ui = (uint16_t)(ui + 1);
    }
    self->used_idx = ui;
    BARRIER();
    st16(used_h + 2, ui);  /* publish after the elements (x86 TSO) */
    BARRIER();
    return 0;
}

/* A written length as given: ``*n``, or ``*big`` (borrowed) for an int beyond 64 bits,
 * which no buffer holds (the check says so, naming it as given). */
static int as_written(PyObject *v, long long *n, PyObject **big) {
    if (!PyLong_Check(v)) {
        PyErr_Format(PyExc_TypeError, "a written length is an int, not %.100s",
                     Py_TYPE(v)->tp_name);
        return -1;
    }
    *n = PyLong_AsLongLong(v);
    if (*n == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
        *big = v;
    }
    return 0;
}

/* The trace events of a put (last: the tracer runs Python, in which another thread may
 * unmap the ring). */
static int device_trace_put(Device *self, const long long *heads, Py_ssize_t count,
                            long long written) {
    if (!count || !tracing()) return 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        unsigned long long n = self->whole_used ? self->held_len[heads[i]] : (unsigned long long)written;
        if (trace(str_put, self->r.name, (long)heads[i], n) < 0) return -1;
    }
    return 0;
}

static PyObject *Device_put_many(Device *self, PyObject *args, PyObject *kwds) {
    READY_OR(self, NULL)
    static char *kwlist[] = {"heads", "written", "notify_needed", NULL};
    PyObject *heads, *written_o;
    long long written;
    int notify_needed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$p", kwlist, &heads, &written_o,
                                     &notify_needed))
        return NULL;
    PyObject *big = NULL;
    if (as_written(written_o, &written, &big) < 0) return NULL;
    if (self->r.broken != Py_None) {
        raise_broken(self->r.broken);
        return NULL;
    }
    PyObject *seq = PySequence_Tuple(heads);  /* (a copy: converting an item runs Python) */
    if (seq == NULL) return NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(seq);
    /* More than num heads cannot all be held: the first num + 1 have a wrong one, which
     * the check below names (as the Python half's does). */
    if (count > (Py_ssize_t)self->r.num) count = (Py_ssize_t)self->r.num + 1;
    long long *hs = self->s_put;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyTuple_GET_ITEM(seq, i);
        hs[i] = PyLong_Check(item) ? PyLong_AsLongLong(item) : -1;
        if (hs[i] == -1 && (PyErr_Occurred() || !PyLong_Check(item))) {
            if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_OverflowError)) {
                Py_DECREF(seq);
                return NULL;
            }
            PyErr_Clear();  /* not a descriptor index this ring has */
            PyErr_Format(PyExc_ValueError, "descriptor %R is not held by the device", item);
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    if (device_put(self, hs, count, written, big) < 0) return NULL;
    int notify = 0;
    if (notify_needed) {
        uint8_t *avail = mv_ptr(self->r.avail);
        if (avail == NULL) return NULL;
        notify = device_notify_answer(self, avail);
    }
    if (device_trace_put(self, hs, count, written) < 0) return NULL;
    return PyBool_FromLong(notify);
}

static PyObject *Device_put(Device *self, PyObject *args, PyObject *kwds) {
    READY_OR(self, NULL)
    static char *kwlist[] = {"head", "written", "notify_needed", NULL};
    PyObject *head_o, *written_o;
    long long written;
    int notify_needed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$p", kwlist, &head_o, &written_o,
                                     &notify_needed))
        return NULL;
    PyObject *big = NULL;
    if (as_written(written_o, &written, &big) < 0) return NULL;
    if (self->r.broken != Py_None) {
        raise_broken(self->r.broken);
        return NULL;
    }
    long long head = PyLong_Check(head_o) ? PyLong_AsLongLong(head_o) : -1;
    if (head == -1 && (PyErr_Occurred() || !PyLong_Check(head_o))) {
        if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_OverflowError)) return NULL;
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "descriptor %R is not held by the device", head_o);
        return NULL;
    }
    if (device_put(self, &head, 1, written, big) < 0) return NULL;
    int notify = 0;
    if (notify_needed) {
        uint8_t *avail = mv_ptr(self->r.avail);
        if (avail == NULL) return NULL;
        notify = device_notify_answer(self, avail);
    }
    if (device_trace_put(self, &head, 1, written) < 0) return NULL;
    return PyBool_FromLong(notify);
}

static PyObject *Device_notify_needed(Device *self, PyObject *Py_UNUSED(ignored)) {
    READY_OR(self, NULL)
    uint8_t *avail = mv_ptr(self->r.avail);
    if (avail == NULL) return NULL;
    return PyBool_FromLong(device_notify_answer(self, avail));
}

static PyObject *Device_disable_notify(Device *self, PyObject *Py_UNUSED(ignored)) {
    READY_OR(self, NULL)
    uint8_t *used_h = mv_ptr(self->r.used_h);
    if (used_h == NULL) return NULL;
    st16(used_h, VRING_USED_F_NO_NOTIFY);
    Py_RETURN_NONE;
}

static PyObject *Device_enable_notify(Device *self, PyObject *Py_UNUSED(ignored)) {
    READY_OR(self, NULL)
    uint8_t *used_h = mv_ptr(self->r.used_h), *avail = mv_ptr(self->r.avail);
    if (!used_h || !avail) return NULL;
    st16(used_h, 0);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return PyBool_FromLong(ld16(avail + 2) != self->last_avail);
}

static PyObject *Device_peek_len(Device *self, PyObject *Py_UNUSED(ignored)) {
    READY_OR(self, NULL)
    uint8_t *avail = mv_ptr(self->r.avail), *desc = mv_ptr(self->r.desc_q);
    if (!avail || !desc) return NULL;
    uint16_t la = self->last_avail;
    if (ld16(avail + 2) == la) Py_RETURN_NONE;
    BARRIER();
    unsigned head = ld16(avail + 4 + 2 * (la & self->r.mask));
    if (head >= self->r.num) Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(ld32(desc + 16 * head + 8));
}

static PyObject *Device_send_copy(Device *self, PyObject *const *args, Py_ssize_t nargs) {
    READY_OR(self, NULL)
    uint32_t src, dst;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "send_copy(mem, src, dst, data)");
        return NULL;
    }
    Py_buffer db;
    if (get_payload(args[3], args[1], args[2], &db, &src, &dst) < 0) return NULL;
    if ((self->r.broken != Py_None || self->r.break_next != Py_None) &&
        vring_check_take(&self->r) < 0) {
        PyBuffer_Release(&db);
        return NULL;
    }
    uint8_t *avail = mv_ptr(self->r.avail), *desc = mv_ptr(self->r.desc_q);
    if (!avail || !desc) {
        PyBuffer_Release(&db);
        return NULL;
    }
    uint16_t la = self->last_avail;
    uint16_t ai = ld16(avail + 2);
    BARRIER();
    PyObject *result = NULL;
    if (ai == la) {
        PyBuffer_Release(&db);
        return PyLong_FromLong(SEND_NO_BUFFER);
    }
    if ((unsigned)(uint16_t)(ai - la) > self->r.num - self->held_count) {
        PyBuffer_Release(&db);
        return device_avail_jump(self, la, ai);
    }
    unsigned head;
    Py_ssize_t off;
    uint32_t cap;
    PyObject *error = NULL;
    if (device_look(self, avail, desc, la, ai, &head, &off, &cap, &error) < 0) {
        PyBuffer_Release(&db);
        return error == NULL ? NULL : vring_break(&self->r, error);
    }
    /* (again: a translation runs Python, in which another thread may unmap) */
    Py_buffer mem;
    if ((avail = mv_ptr(self->r.avail)) == NULL) {
        PyBuffer_Release(&db);
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &mem, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&db);
        return NULL;
    }
    Py_ssize_t n = RPMSG_HDR_SIZE + db.len;
    if (n > (Py_ssize_t)cap) {  /* left on the ring, untaken: a smaller message fits */
        result = PyLong_FromLong(SEND_TOO_SMALL);
        goto done;
    }
    if (copy_out(&mem, off, src, dst, &db) < 0) goto done;
    device_hold(self, head, cap);
    self->last_avail = (uint16_t)(la + 1);
    long long h = head;
    if (device_put(self, &h, 1, n, NULL) < 0) goto done;
    result = PyLong_FromLong(device_notify_answer(self, avail));
    PyBuffer_Release(&db);
    PyBuffer_Release(&mem);
    /* (traced last: the tracer runs Python, in which another thread may unmap) */
    if (tracing() && (trace(str_get, self->r.name, head, cap) < 0 ||
                      device_trace_put(self, &h, 1, n) < 0))
        Py_CLEAR(result);
    return result;
done:
    PyBuffer_Release(&db);
    PyBuffer_Release(&mem);
    return result;
}

/* Give back the ``count`` buffers of a receive step (used length 0, as put_many). */
static int device_give_back(Device *self, Py_ssize_t count) {
    if (count == 0) return 0;
    if (device_put(self, self->s_done, count, 0, NULL) < 0) return -1;
    return device_trace_put(self, self->s_done, count, 0);
}

static PyObject *Device_recv_copies(Device *self, PyObject *const *args, Py_ssize_t nargs) {
    READY_OR(self, NULL)
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "recv_copies(cmap, endpoints, dispatch, kick, more)");
        return NULL;
    }
    PyObject *cmap = args[0], *endpoints = args[1], *dispatch = args[2], *kick = args[3];
    PyObject *more = args[4] == Py_None ? NULL : args[4];
    if (!PyDict_Check(endpoints)) {
        PyErr_SetString(PyExc_TypeError, "endpoints must be a dict");
        return NULL;
    }
    if ((self->r.broken != Py_None || self->r.break_next != Py_None) &&
        vring_check_take(&self->r) < 0)
        return NULL;
    uint8_t *avail = mv_ptr(self->r.avail);
    if (avail == NULL) return NULL;
    uint16_t la = self->last_avail;
    uint16_t ai = ld16(avail + 2);
    BARRIER();
    if (ai == la) return PyLong_FromLong(0);
    unsigned count = (uint16_t)(ai - la);
    if (count > self->r.num - self->held_count) return device_avail_jump(self, la, ai);
    int traced = tracing();
    unsigned taken = 0;
    Py_ssize_t ndone = 0;
    while (taken < count) {
        uint8_t *desc = mv_ptr(self->r.desc_q);  /* (again: Python ran since) */
        if ((avail = mv_ptr(self->r.avail)) == NULL || desc == NULL) goto fail;
        unsigned head;
        Py_ssize_t off;
        uint32_t length;
        PyObject *error = NULL;
        if (device_look(self, avail, desc, la, ai, &head, &off, &length, &error) < 0) {
            if (error == NULL) goto fail;  /* raised */
            if (taken) {
                Py_XSETREF(self->r.break_next, error);
                break;  /* the next call breaks on it */
            }
            vring_break(&self->r, error);
            goto fail;
        }
        int has, failed, rc;
        uint32_t src = 0, dst = 0, ln = 0;
        if (rx_header(cmap, off, length, &has, &src, &dst, &ln) < 0) goto fail;
        PyObject *ept = has ? rx_endpoint(endpoints, dst, &failed) : NULL;
        if (has && failed) goto fail;
        if ((rc = rx_stop_for_callback(more, ept)) != 0) {
            Py_XDECREF(ept);
            if (rc < 0) goto fail;
            break;  /* left on the ring, untaken */
        }
        device_hold(self, head, length);
        la = (uint16_t)(la + 1);
        self->last_avail = la;
        taken++;
        if (traced && trace(str_get, self->r.name, (long)head, length) < 0) goto fail_ept;
        int fast = 0;
        if (has && !traced && ept != NULL && ln <= length - RPMSG_HDR_SIZE) {
            int zc = rx_flag(ept, str_zero_copy, 0);
            if (zc < 0) goto fail_ept;
            fast = !zc;
        }
        if (fast) {
            PyObject *payload = rx_payload(cmap, off, ln);
            if (payload == NULL) goto fail_ept;
            self->s_done[ndone++] = head;
            int r = rx_deliver(ept, payload, src);
            Py_DECREF(payload);
            if (r < 0) goto fail_ept;
        } else {
            int held = rx_dispatch(dispatch, off, length, head);
            if (held < 0) goto fail_ept;
            if (!held) self->s_done[ndone++] = head;
        }
        Py_XDECREF(ept);
        continue;
    fail_ept:
        Py_XDECREF(ept);
        goto fail;
    }
    if (ndone) {
        if (device_put(self, self->s_done, ndone, 0, NULL) < 0) return NULL;
        if ((avail = mv_ptr(self->r.avail)) == NULL) return NULL;
        int notify = device_notify_answer(self, avail);
        if (device_trace_put(self, self->s_done, ndone, 0) < 0) return NULL;
        if (notify && rx_kick(&self->r, kick) < 0) return NULL;
    }
    return PyLong_FromUnsignedLong(taken);
fail:
    if (ndone) {  /* what was taken and is not held goes back, and its notification is owed */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (device_give_back(self, ndone) < 0) PyErr_Clear();
        self->r.owed = 1;
        PyErr_Restore(type, value, tb);
    }
    return NULL;
}

static PyMethodDef Device_methods[] = {
    {"notified", (PyCFunction)vring_notified, METH_NOARGS, NULL},
    {"has_avail", (PyCFunction)Device_has_avail, METH_NOARGS, NULL},
    {"get", (PyCFunction)Device_get, METH_NOARGS, NULL},
    {"get_many", (PyCFunction)(void (*)(void))Device_get_many, METH_VARARGS | METH_KEYWORDS,
     NULL},
    {"put", (PyCFunction)(void (*)(void))Device_put, METH_VARARGS | METH_KEYWORDS, NULL},
    {"put_many", (PyCFunction)(void (*)(void))Device_put_many, METH_VARARGS | METH_KEYWORDS,
     NULL},
    {"notify_needed", (PyCFunction)Device_notify_needed, METH_NOARGS, NULL},
    {"disable_notify", (PyCFunction)Device_disable_notify, METH_NOARGS, NULL},
    {"enable_notify", (PyCFunction)Device_enable_notify, METH_NOARGS, NULL},
    {"peek_len", (PyCFunction)Device_peek_len, METH_NOARGS, NULL},
    {"send_copy", (PyCFunction)(void (*)(void))Device_send_copy, METH_FASTCALL, NULL},
    {"recv_copies", (PyCFunction)(void (*)(void))Device_recv_copies, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Device_members[] = {VRING_MEMBERS, {NULL, 0, 0, 0, NULL}};

static PyObject *Device_get_used_idx(Device *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLong(self->used_idx);
}

/* What the next put publishes from (a test firmware moves it, as the Python half's). */
static int Device_set_used_idx(Device *self, PyObject *value, void *Py_UNUSED(closure)) {
    unsigned long v = value ? PyLong_AsUnsignedLong(value) : 0;
    if (value == NULL || (v == (unsigned long)-1 && PyErr_Occurred()) || v > 0xFFFF) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "a u16 index is needed");
        return -1;
    }
    self->used_idx = (uint16_t)v;
    return 0;
}

static PyGetSetDef Device_getsets[] = {
    VRING_GETSETS,
    {"_used_idx", (getter)Device_get_used_idx, (setter)Device_set_used_idx, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Device_slots[] = {
    {Py_tp_doc, "The device half of a split virtqueue, compiled (see "
                "amplink.virtio.virtqueue.VirtqueueDevice)."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, Device_init},
    {Py_tp_dealloc, Device_dealloc},
    {Py_tp_traverse, Device_traverse},
    {Py_tp_clear, Device_clear},
    {Py_tp_methods, Device_methods},
    {Py_tp_members, Device_members},
    {Py_tp_getset, Device_getsets},
    {0, NULL},
};

static PyType_Spec Device_spec = {
    .name = "amplink.virtio._vring.VirtqueueDevice",
    .basicsize = sizeof(Device),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = Device_slots,
};

/* ---- the module --------------------------------------------------------------------- */

static PyObject *import_attr(const char *module, const char *name) {
    PyObject *m = PyImport_ImportModule(module);
    if (m == NULL) return NULL;
    PyObject *a = PyObject_GetAttrString(m, name);
    Py_DECREF(m);
    return a;
}

static int vring_exec(PyObject *m) {
    VirtqueueError = import_attr("amplink.errors", "VirtqueueError");
    AddressError = import_attr("amplink.errors", "AddressError");
    TRACER = import_attr("amplink.tracing", "TRACER");
    if (!VirtqueueError || !AddressError || !TRACER) return -1;
#define INTERN(var, s) if ((var = PyUnicode_InternFromString(s)) == NULL) return -1;
    INTERN(str_enabled, "enabled")
    INTERN(str_event, "event")
    INTERN(str_virtio, "virtio")
    INTERN(str_add, "add")
    INTERN(str_get, "get")
    INTERN(str_put, "put")
    INTERN(str_vq, "vq")
    INTERN(str_desc, "desc")
    INTERN(str_len, "len")
    INTERN(str_strerror, "strerror")
    INTERN(str_cast, "cast")
    INTERN(str_view, "view")
    INTERN(str_deliver, "deliver")
    INTERN(str_callback, "callback")
    INTERN(str_zero_copy, "zero_copy")
#undef INTERN
    PyObject *driver = PyType_FromModuleAndSpec(m, &Driver_spec, NULL);
    if (driver == NULL || PyModule_AddObject(m, "VirtqueueDriver", driver) < 0) {
        Py_XDECREF(driver);
        return -1;
    }
    PyObject *device = PyType_FromModuleAndSpec(m, &Device_spec, NULL);
    if (device == NULL || PyModule_AddObject(m, "VirtqueueDevice", device) < 0) {
        Py_XDECREF(device);
        return -1;
    }
    if (PyModule_AddIntConstant(m, "SEND_NO_BUFFER", SEND_NO_BUFFER) < 0 ||
        PyModule_AddIntConstant(m, "SEND_TOO_SMALL", SEND_TOO_SMALL) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot vring_slots[] = {
    {Py_mod_exec, vring_exec},
    {0, NULL},
};

static struct PyModuleDef vring_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "amplink.virtio._vring",
    .m_doc = "The split virtqueue's two halves, compiled (amplink.virtio.rings chooses).",
    .m_size = 0,
    .m_slots = vring_slots,
};

PyMODINIT_FUNC PyInit__vring(void) { return PyModuleDef_Init(&vring_module); }
