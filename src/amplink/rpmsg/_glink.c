/* The hot methods of a GLINK FIFO's two ends, compiled: FifoWriter.put, .put_data,
 * .kick_needed, .free and FifoReader.feed, .settle, .set_polling, .pending, with the
 * same answers, errors, checks of the peer's index and bytes in shared memory as the
 * pure-Python reference amplink.rpmsg.glink_fifo.  The types here are bases:
 * amplink.rpmsg.glink_ends puts each before its pure-Python class, whose __init__ and
 * other methods run unchanged on the fields stored here (member descriptors of the
 * same names).  For a GlinkProtocol, feed() also does the common cases of
 * receive_data and receive_rx_done on the protocol's own state (fast_data,
 * fast_rx_done: kept in step with amplink.rpmsg.glink_protocol).
 *
 * Shared memory is reached through the mapping (a buffer taken again at every call, so
 * a closed mapping raises ValueError, never touches unmapped memory) and the header's
 * u32 memoryview (refused once released, as indexing one does).  Every field Python
 * may have assigned is checked against both before any access.  No Python code runs
 * between taking an address and the last access through it: feed() lets the buffer go
 * before it calls the protocol and takes it again after.  Apart from those calls,
 * every call runs with the GIL held and calls no Python code.
 *
 * Memory model (amplink/memory/barrier.py): one volatile aligned u32 load or store per
 * index; bytes copied, then the index published after a compiler barrier; the index
 * read, then a compiler barrier, then the bytes; x86-64 TSO for the rest, and a real
 * fence (__atomic_thread_fence(__ATOMIC_SEQ_CST): mfence) where the pure ends fence
 * on their lock (the kick handshakes).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define TX_DATA 9
#define TX_DATA_CONT 12
#define RX_DONE 6
#define RX_DONE_W_REUSE 14
#define HDR_SIZE 8
#define DATA_HDR_SIZE 16
#define LEFT_RX_DONES 8 /* glink_fifo.LEFT_RX_DONES */

#define BARRIER() __asm__ __volatile__("" ::: "memory")
#define FENCE() __atomic_thread_fence(__ATOMIC_SEQ_CST)

static PyObject *FifoError;  /* amplink.errors.FifoError */
static PyObject *StructError;  /* struct.error */
static PyObject *str_receive_data, *str_receive_rx_done, *str_feed_other, *str_clear;
static PyObject *str_rcids, *str_local_intents, *str_used_intents, *str_free_intents, *str_lent;
static PyObject *str_events, *str_watch_intents, *str_name, *str_append;
static PyObject *GlinkProtocol, *MessageReceived;  /* from amplink.rpmsg.glink_protocol */

typedef struct {
    PyObject_HEAD
    PyObject *name;   /* str */
    PyObject *mem;    /* the mapping (a writable buffer) */
    PyObject *words;  /* memoryview, format "I": both sides' index lines */
    Py_ssize_t base, size, end, mask, mine_at, peer_at, polling_at, awaiting_at;
    Py_ssize_t pos, total, kicked, seen;
    char polling;
} FifoEnd;

/* What a call reaches shared memory through, taken by begin() and let go by finish(). */
typedef struct {
    Py_buffer buf;
    uint8_t *ring;            /* the FIFO's first byte */
    volatile uint32_t *words; /* the header's u32 words */
} Access;

static inline uint32_t word(const Access *a, Py_ssize_t i) { return a->words[i]; }

/* Take the mapping's buffer and the words' address, checking every field against them. */
static int begin(FifoEnd *s, Access *a) {
    if (s->words == NULL || s->mem == NULL || s->name == NULL) {
        PyErr_SetString(PyExc_ValueError, "the FIFO end was not initialised");
        return -1;
    }
    if (!PyMemoryView_Check(s->words)) {
        PyErr_SetString(PyExc_TypeError, "the FIFO's words must be a memoryview");
        return -1;
    }
    PyMemoryViewObject *m = (PyMemoryViewObject *)s->words;
    if (m->flags & _Py_MEMORYVIEW_RELEASED) {
        PyErr_SetString(PyExc_ValueError, "operation forbidden on released memoryview object");
        return -1;
    }
    Py_buffer *v = &m->view;
    if (v->itemsize != 4 || v->readonly || v->ndim != 1 ||
        (v->strides != NULL && v->strides[0] != 4) || ((uintptr_t)v->buf & 3)) {
        PyErr_SetString(PyExc_TypeError, "the FIFO's words must be a writable u32 view");
        return -1;
    }
    Py_ssize_t n = v->len / 4;
    if (s->mine_at < 0 || s->mine_at >= n || s->peer_at < 0 || s->peer_at >= n ||
        s->polling_at < 0 || s->polling_at >= n || s->awaiting_at < 0 || s->awaiting_at >= n) {
        PyErr_SetString(PyExc_IndexError, "index out of bounds on dimension 1");
        return -1;
    }
    /* (total and kicked count bytes ever written: bounded so that no sum or difference
     * of them can overflow; 2**62 bytes is 146 years at 1 GB/s) */
    if (s->size < DATA_HDR_SIZE || (s->size & (s->size - 1)) || s->mask != s->size - 1 ||
        s->pos < 0 || s->pos > s->mask || s->base < 0 || s->total < 0 ||
        s->total > ((Py_ssize_t)1 << 62) || s->kicked < 0 || s->kicked > s->total) {
        PyErr_SetString(PyExc_ValueError, "the FIFO end's fields are inconsistent");
        return -1;
    }
    if (PyObject_GetBuffer(s->mem, &a->buf, PyBUF_WRITABLE) < 0) return -1;
    if (a->buf.len < s->base || a->buf.len - s->base < s->size) {
        PyBuffer_Release(&a->buf);
        PyErr_SetString(PyExc_ValueError, "the FIFO lies outside the mapping");
        return -1;
    }
    a->ring = (uint8_t *)a->buf.buf + s->base;
    a->words = (volatile uint32_t *)v->buf;
    return 0;
}

static inline void finish(Access *a) { PyBuffer_Release(&a->buf); }

/* FifoError(name, msg) raised (msg, a str, consumed); returns NULL. */
static PyObject *fifo_error(FifoEnd *s, PyObject *msg) {
    if (msg == NULL) return NULL;
    PyObject *err = PyObject_CallFunctionObjArgs(FifoError, s->name, msg, NULL);
    Py_DECREF(msg);
    if (err != NULL) {
        PyErr_SetObject(FifoError, err);
        Py_DECREF(err);
    }
    return NULL;
}

/* FifoError(name, "the peer's index ... is outside the ...-byte FIFO"); returns NULL. */
static PyObject *bad_index(FifoEnd *s, uint32_t index) {
    return fifo_error(s, PyUnicode_FromFormat("the peer's index %u is outside the %zd-byte FIFO",
                                              (unsigned)index, s->size));
}

/* The peer's index, checked (-1 with FifoError set if it lies outside the FIFO). */
static inline int64_t peer_index(FifoEnd *s, const Access *a) {
    uint32_t index = word(a, s->peer_at);
    BARRIER();
    if (index > (uint64_t)s->mask) {
        bad_index(s, index);
        return -1;
    }
    return index;
}

/* Copy n bytes into the ring at pos, wrapping; the new position. */
static Py_ssize_t ring_write(FifoEnd *s, const Access *a, Py_ssize_t pos, const void *src,
                             Py_ssize_t n) {
    Py_ssize_t first = s->size - pos;
    if (n <= first) {
        memcpy(a->ring + pos, src, (size_t)n);
    } else {
        memcpy(a->ring + pos, src, (size_t)first);
        memcpy(a->ring, (const uint8_t *)src + first, (size_t)(n - first));
    }
    return (pos + n) & s->mask;
}

/* Copy n bytes out of the ring at pos, wrapping. */
static void ring_read(FifoEnd *s, const Access *a, Py_ssize_t pos, void *dst, Py_ssize_t n) {
    Py_ssize_t first = s->size - pos;
    if (n <= first) {
        memcpy(dst, a->ring + pos, (size_t)n);
    } else {
        memcpy(dst, a->ring + pos, (size_t)first);
        memcpy((uint8_t *)dst + first, a->ring, (size_t)(n - first));
    }
}

static int FifoEnd_traverse(FifoEnd *s, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(s));
    Py_VISIT(s->name);
    Py_VISIT(s->mem);
    Py_VISIT(s->words);
    return 0;
}

static int FifoEnd_clear(FifoEnd *s) {
    Py_CLEAR(s->name);
    Py_CLEAR(s->mem);
    Py_CLEAR(s->words);
    return 0;
}

static void FifoEnd_dealloc(FifoEnd *s) {
    PyTypeObject *tp = Py_TYPE(s);
    PyObject_GC_UnTrack(s);
    FifoEnd_clear(s);
    tp->tp_free((PyObject *)s);
    Py_DECREF(tp);
}

static PyMemberDef FifoEnd_members[] = {
    {"name", T_OBJECT_EX, offsetof(FifoEnd, name), 0, NULL},
    {"_mem", T_OBJECT_EX, offsetof(FifoEnd, mem), 0, NULL},
    {"_words", T_OBJECT_EX, offsetof(FifoEnd, words), 0, NULL},
    {"_base", T_PYSSIZET, offsetof(FifoEnd, base), 0, NULL},
    {"_size", T_PYSSIZET, offsetof(FifoEnd, size), 0, NULL},
    {"_end", T_PYSSIZET, offsetof(FifoEnd, end), 0, NULL},
    {"_mask", T_PYSSIZET, offsetof(FifoEnd, mask), 0, NULL},
    {"_mine_at", T_PYSSIZET, offsetof(FifoEnd, mine_at), 0, NULL},
    {"_peer_at", T_PYSSIZET, offsetof(FifoEnd, peer_at), 0, NULL},
    {"_polling_at", T_PYSSIZET, offsetof(FifoEnd, polling_at), 0, NULL},
    {"_awaiting_at", T_PYSSIZET, offsetof(FifoEnd, awaiting_at), 0, NULL},
    {"_pos", T_PYSSIZET, offsetof(FifoEnd, pos), 0, NULL},
    {"total", T_PYSSIZET, offsetof(FifoEnd, total), 0, NULL},
    {"_kicked", T_PYSSIZET, offsetof(FifoEnd, kicked), 0, NULL},
    {"_seen", T_PYSSIZET, offsetof(FifoEnd, seen), 0, NULL},
    {"polling", T_BOOL, offsetof(FifoEnd, polling), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static int arg_ssize(PyObject *v, Py_ssize_t *out) {
    *out = PyNumber_AsSsize_t(v, PyExc_OverflowError);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* ---- the writer ---------------------------------------------------------------------- */

/* After publishing: whether to kick the peer (FifoWriter.kick_needed's answer), the
 * kick counted; -1 with FifoError set. */
static int kick_answer(FifoEnd *s, const Access *a, int rx_done_only) {
    FENCE();
    if (word(a, s->polling_at)) return 0;
    if (!word(a, s->awaiting_at)) {
        if (rx_done_only) return 0;
        int64_t tail = peer_index(s, a);
        if (tail < 0) return -1;
        /* read_past(kicked): total - kicked >= used() */
        if (s->total - s->kicked < ((s->pos - tail) & s->mask)) return 0;
    }
    s->kicked = s->total;
    return 1;
}

static PyObject *Writer_put(FifoEnd *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "put(head, data, total, keep, rx_done_only)");
        return NULL;
    }
    Py_ssize_t total, keep;
    if (arg_ssize(args[2], &total) < 0 || arg_ssize(args[3], &keep) < 0) return NULL;
    /* What is written is at most total <= free - keep < size bytes (never more than
     * the ring, whatever the caller passes) */
    if (keep < 0 || total < 0) {
        PyErr_SetString(PyExc_ValueError, "total and keep must not be negative");
        return NULL;
    }
    int rx_done_only = PyObject_IsTrue(args[4]);
    if (rx_done_only < 0) return NULL;
    Py_buffer head, data;
    if (PyObject_GetBuffer(args[0], &head, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&head);
        return NULL;
    }
    PyObject *result = NULL;
    Access a;
    if (begin(s, &a) < 0) goto out;
    int64_t tail = peer_index(s, &a);
    if (tail < 0) goto done;
    Py_ssize_t room = (tail - s->pos - 1) & s->mask;
    if (total > room || keep > room - total) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (total < head.len + data.len) {
        PyErr_SetString(PyExc_ValueError, "total must hold head and data");
        goto done;
    }
    Py_ssize_t pos = ring_write(s, &a, s->pos, head.buf, head.len);
    ring_write(s, &a, pos, data.buf, data.len);
    s->pos = (s->pos + total) & s->mask;  /* (the padding is left as it is) */
    s->total += total;
    BARRIER();
    a.words[s->mine_at] = (uint32_t)s->pos;  /* after the bytes (x86 TSO) */
    int kick = kick_answer(s, &a, rx_done_only);
    if (kick >= 0) result = Py_NewRef(kick ? Py_True : Py_False);
done:
    finish(&a);
out:
    PyBuffer_Release(&head);
    PyBuffer_Release(&data);
    return result;
}

static PyObject *Writer_kick_needed(FifoEnd *s, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames) {
    static const char *const names[] = {"rx_done_only", NULL};
    PyObject *arg = Py_False;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1 || (nkw && !PyUnicode_Check(PyTuple_GET_ITEM(kwnames, 0))) ||
        (nkw && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), names[0]))) {
        PyErr_SetString(PyExc_TypeError, "kick_needed(rx_done_only=False)");
        return NULL;
    }
    if (nargs + nkw == 1) arg = args[0];
    int rx_done_only = PyObject_IsTrue(arg);
    if (rx_done_only < 0) return NULL;
    Access a;
    if (begin(s, &a) < 0) return NULL;
    int kick = kick_answer(s, &a, rx_done_only);
    finish(&a);
    if (kick < 0) return NULL;
    return Py_NewRef(kick ? Py_True : Py_False);
}

static PyObject *Writer_free(FifoEnd *s, PyObject *Py_UNUSED(ignored)) {
    Access a;
    if (begin(s, &a) < 0) return NULL;
    int64_t tail = peer_index(s, &a);
    finish(&a);
    if (tail < 0) return NULL;
    return PyLong_FromSsize_t((tail - s->pos - 1) & s->mask);
}

#define MAX_PARTS 64  /* commands written ahead of a message in one call (else two calls) */

static PyObject *Writer_put_data(FifoEnd *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "put_data(out, lcid, iid, data, keep)");
        return NULL;
    }
    PyObject *out = args[0];
    unsigned long lcid = PyLong_AsUnsignedLong(args[1]);
    if (lcid == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    unsigned long iid = PyLong_AsUnsignedLong(args[2]);
    if (iid == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    if (lcid > 0xFFFF || iid > 0xFFFFFFFFul) {
        PyErr_SetString(StructError, "a channel or intent id is out of range");
        return NULL;
    }
    Py_ssize_t keep;
    if (arg_ssize(args[4], &keep) < 0) return NULL;
    if (keep < 0) {  /* (a bound on what is written: see put) */
        PyErr_SetString(PyExc_ValueError, "keep must not be negative");
        return NULL;
    }
    Py_buffer data;
    if (PyObject_GetBuffer(args[3], &data, PyBUF_SIMPLE) < 0) return NULL;
    if (data.len > 0xFFFFFFFFll) {
        PyBuffer_Release(&data);
        PyErr_SetString(StructError, "the message is too large for a TX_DATA");
        return NULL;
    }
    /* (an empty queue, the common case, makes no list: 1,000 instructions a call) */
    Py_ssize_t queued_n = PyObject_Length(out);
    PyObject *parts = queued_n < 0 ? NULL
                      : queued_n ? PySequence_Fast(out, "out must be a sequence of bytes")
                                 : PyTuple_New(0);
    if (parts == NULL) {
        PyBuffer_Release(&data);
        return NULL;
    }
    Py_ssize_t nparts = PySequence_Fast_GET_SIZE(parts), got = 0, queued = 0;
    int queued_any = nparts > 0;
    Py_buffer bufs[MAX_PARTS];
    PyObject *result = NULL;
    Access a;
    int held = 0;
    if (nparts > MAX_PARTS) {  /* (many RX_DONEs held back): joined first, as one part */
        PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
        PyObject *joined = empty ? PyObject_CallMethod(empty, "join", "O", parts) : NULL;
        Py_XDECREF(empty);
        PyObject *one = joined ? PyTuple_Pack(1, joined) : NULL;
        Py_XDECREF(joined);
        if (one == NULL) goto out;
        Py_SETREF(parts, one);
        nparts = 1;
    }
    for (; got < nparts; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(parts, got), &bufs[got], PyBUF_SIMPLE) < 0)
            goto out;
        queued += bufs[got].len;
    }
    uint8_t hdr[DATA_HDR_SIZE];
    uint32_t n32 = (uint32_t)data.len, zero = 0, iid32 = (uint32_t)iid;
    uint16_t cmd16 = TX_DATA, lcid16 = (uint16_t)lcid;
    memcpy(hdr, &cmd16, 2);
    memcpy(hdr + 2, &lcid16, 2);
    memcpy(hdr + 4, &iid32, 4);
    memcpy(hdr + 8, &n32, 4);
    memcpy(hdr + 12, &zero, 4);
    Py_ssize_t total = queued + ((DATA_HDR_SIZE + data.len + 7) & ~(Py_ssize_t)7);
    if (begin(s, &a) < 0) goto out;
    held = 1;
    int64_t tail = peer_index(s, &a);
    if (tail < 0) goto out;
    Py_ssize_t room = (tail - s->pos - 1) & s->mask;
    if (total > room || keep > room - total) {
        result = Py_NewRef(Py_None);
        goto out;
    }
    Py_ssize_t pos = s->pos;
    for (Py_ssize_t i = 0; i < nparts; i++) pos = ring_write(s, &a, pos, bufs[i].buf, bufs[i].len);
    pos = ring_write(s, &a, pos, hdr, DATA_HDR_SIZE);
    ring_write(s, &a, pos, data.buf, data.len);
    s->pos = (s->pos + total) & s->mask;  /* (the padding is left as it is) */
    s->total += total;
    BARRIER();
    a.words[s->mine_at] = (uint32_t)s->pos;  /* after the bytes (x86 TSO) */
    int kick = kick_answer(s, &a, 0);
    if (kick >= 0) result = Py_NewRef(kick ? Py_True : Py_False);
out:
    if (held) finish(&a);
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&bufs[i]);
    PyBuffer_Release(&data);
    Py_DECREF(parts);
    if (result != NULL && result != Py_None && queued_any) {  /* written: they are taken off */
        PyObject *r = PyObject_CallMethodNoArgs(out, str_clear);
        if (r == NULL) Py_CLEAR(result);
        Py_XDECREF(r);
    }
    return result;
}

static PyMethodDef Writer_methods[] = {
    {"put_data", (PyCFunction)(void (*)(void))Writer_put_data, METH_FASTCALL,
     "FifoWriter.put_data, compiled."},
    {"put", (PyCFunction)(void (*)(void))Writer_put, METH_FASTCALL,
     "FifoWriter.put, compiled."},
    {"kick_needed", (PyCFunction)(void (*)(void))Writer_kick_needed,
     METH_FASTCALL | METH_KEYWORDS, "FifoWriter.kick_needed, compiled."},
    {"free", (PyCFunction)Writer_free, METH_NOARGS, "FifoWriter.free, compiled."},
    {NULL, NULL, 0, NULL},
};

/* ---- the reader ---------------------------------------------------------------------- */

/* Whether the bytes from the tail to head (unchecked) are whole RX_DONE(_W_REUSE)
 * commands, LEFT_RX_DONES at most (FifoReader._rx_dones_to). */
static int rx_dones_to(FifoEnd *s, const Access *a, uint32_t head) {
    if (head > (uint64_t)s->mask) return 0;  /* (the read that follows finds it broken) */
    Py_ssize_t n = ((Py_ssize_t)head - s->pos) & s->mask;
    if (n == 0 || n % HDR_SIZE || n > LEFT_RX_DONES * HDR_SIZE) return 0;
    for (Py_ssize_t off = 0; off < n; off += HDR_SIZE) {
        uint8_t b[2];
        ring_read(s, a, (s->pos + off) & s->mask, b, 2);
        unsigned cmd = (unsigned)b[0] | ((unsigned)b[1] << 8);
        if (cmd != RX_DONE && cmd != RX_DONE_W_REUSE) return 0;
    }
    return 1;
}

static PyObject *Reader_pending(FifoEnd *s, PyObject *Py_UNUSED(ignored)) {
    Access a;
    if (begin(s, &a) < 0) return NULL;
    uint32_t head = word(&a, s->peer_at);
    finish(&a);
    return Py_NewRef(head != (uint64_t)s->pos ? Py_True : Py_False);
}

static PyObject *Reader_pending_data(FifoEnd *s, PyObject *Py_UNUSED(ignored)) {
    Access a;
    if (begin(s, &a) < 0) return NULL;
    uint32_t head = word(&a, s->peer_at);
    BARRIER();
    int more = head != (uint64_t)s->pos &&
               (word(&a, s->awaiting_at) || !rx_dones_to(s, &a, head));
    finish(&a);
    return Py_NewRef(more ? Py_True : Py_False);
}

static PyObject *Reader_set_polling(FifoEnd *s, PyObject *arg) {
    int polling = PyObject_IsTrue(arg);
    if (polling < 0) return NULL;
    Access a;
    if (begin(s, &a) < 0) return NULL;
    s->polling = (char)polling;
    a.words[s->polling_at] = (uint32_t)polling;
    if (!polling) FENCE();  /* (setting it needs none: a peer that missed it kicks once more) */
    finish(&a);
    Py_RETURN_NONE;
}

static PyObject *Reader_settle(FifoEnd *s, PyObject *arg) {
    int quiet = PyObject_IsTrue(arg);
    if (quiet < 0) return NULL;
    Access a;
    if (begin(s, &a) < 0) return NULL;
    if (quiet) a.words[s->polling_at] = 0;
    FENCE();
    uint32_t head = word(&a, s->peer_at);
    BARRIER();
    int more = head != (uint64_t)s->seen &&
               (word(&a, s->awaiting_at) || !rx_dones_to(s, &a, head));
    if (!more) {
        if (quiet) s->polling = 0;
    } else if (quiet) {
        a.words[s->polling_at] = 1;  /* (needs no fence: a peer that missed it kicks once more) */
    }
    finish(&a);
    return Py_NewRef(more ? Py_True : Py_False);
}

/* proto.<method>(args[1:]...) (args[0] is set here); -1 on error. */
static int call_method(PyObject *proto, PyObject *method, PyObject **args, size_t nargs) {
    args[0] = proto;
    PyObject *r = PyObject_VectorcallMethod(method, args, nargs, NULL);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

/* call_method with the buffer let go around it and taken again after (the call runs
 * Python: another thread may close the region meanwhile); -1 on error, with no buffer
 * held. */
static int call_proto(FifoEnd *s, Access *a, PyObject *proto, PyObject *method,
                      PyObject **args, size_t nargs) {
    finish(a);
    if (call_method(proto, method, args, nargs) < 0) return -1;
    return begin(s, a);
}

/* ---- the protocol's common cases (amplink.rpmsg.glink_protocol) ---------------------- */

/* GlinkProtocol and MessageReceived, imported at the first feed (the protocol module
 * imports the rpmsg core: not while this module is being imported). */
static int protocol_types(void) {
    if (GlinkProtocol != NULL) return 0;
    PyObject *m = PyImport_ImportModule("amplink.rpmsg.glink_protocol");
    if (m == NULL) return -1;
    PyObject *proto = PyObject_GetAttrString(m, "GlinkProtocol");
    PyObject *msg = PyObject_GetAttrString(m, "MessageReceived");
    Py_DECREF(m);
    if (proto == NULL || msg == NULL || !PyType_Check(proto) || !PyType_Check(msg) ||
        !PyType_IsSubtype((PyTypeObject *)msg, &PyTuple_Type)) {
        Py_XDECREF(proto);
        Py_XDECREF(msg);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "unexpected amplink.rpmsg.glink_protocol types");
        return -1;
    }
    GlinkProtocol = proto;
    MessageReceived = msg;
    return 0;
}

/* getattr(obj, name) if it is exactly of ``type`` (new reference); NULL with no error
 * set if it is not. */
static PyObject *attr_of(PyObject *obj, PyObject *name, PyTypeObject *type) {
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v != NULL && Py_TYPE(v) != type) Py_CLEAR(v);
    return v;
}

/* What the common cases looked up, kept for the rest of one feed: the protocol's
 * ``_rcids`` and ``events``, and the last channel's fields (a stream is all on one
 * channel).  The protocol never rebinds these attributes (it changes the dicts and
 * sets in place); the cache is dropped whenever the protocol's own Python runs (a
 * method called, another command parsed), which may open or close channels. */
typedef struct {
    PyObject *rcids, *events;  /* proto._rcids (a dict), proto.events */
    long cid;  /* the channel cached below (-1: none) */
    PyObject *ch, *local, *lent, *name, *used, *free_;  /* each fetched when first needed */
} Cache;
#define CACHE_INIT {NULL, NULL, -1, NULL, NULL, NULL, NULL, NULL, NULL}

static void cache_channel_clear(Cache *c) {
    c->cid = -1;
    Py_CLEAR(c->ch);
    Py_CLEAR(c->local);
    Py_CLEAR(c->lent);
    Py_CLEAR(c->name);
    Py_CLEAR(c->used);
    Py_CLEAR(c->free_);
}

static void cache_clear(Cache *c) {
    cache_channel_clear(c);
    Py_CLEAR(c->rcids);
    Py_CLEAR(c->events);
}

/* The peer's channel ``cid`` (``vcid`` its int) into the cache: 1, or 0 with no error
 * set if it is not open, -1 on error. */
static int peer_channel(PyObject *proto, long cid, PyObject *vcid, Cache *c) {
    if (c->cid == cid) return 1;
    cache_channel_clear(c);
    if (c->rcids == NULL && (c->rcids = attr_of(proto, str_rcids, &PyDict_Type)) == NULL)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *ch = PyDict_GetItemWithError(c->rcids, vcid);  /* (borrowed) */
    if (ch == NULL) return PyErr_Occurred() ? -1 : 0;
    c->ch = Py_NewRef(ch);
    c->cid = cid;
    return 1;
}

/* The cached channel's field ``name`` if it is exactly of ``type`` (borrowed, kept in
 * ``*slot``); NULL with no error set if it is not. */
static PyObject *channel_field(Cache *c, PyObject **slot, PyObject *name, PyTypeObject *type) {
    if (*slot == NULL) *slot = attr_of(c->ch, name, type);
    return *slot;
}

/* What GlinkProtocol.receive_data does with a whole message in one chunk for an
 * intent it gave and that holds none: lent, and a MessageReceived event.  1: done;
 * 0: not that case, the Python method must run (nothing was changed); -1: error. */
static int fast_data(PyObject *proto, long cid, PyObject *vcid, PyObject *iid, PyObject *chunk,
                     Cache *c) {
    int done = peer_channel(proto, cid, vcid, c);
    if (done <= 0) return done;
    done = 0;
    PyObject *local, *lent, *event = NULL;
    if ((local = channel_field(c, &c->local, str_local_intents, &PyDict_Type)) == NULL) goto out;
    if ((lent = channel_field(c, &c->lent, str_lent, &PySet_Type)) == NULL) goto out;
    PyObject *size = PyDict_GetItemWithError(local, iid);  /* (borrowed) */
    if (size == NULL || !PyLong_CheckExact(size)) goto out;
    Py_ssize_t room = PyLong_AsSsize_t(size);
    if (room == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        goto out;
    }
    int held = PySet_Contains(lent, iid);
    if (held != 0 || PyBytes_GET_SIZE(chunk) > room) {
        done = held < 0 ? -1 : 0;
        goto out;
    }
    if (c->name == NULL && (c->name = PyObject_GetAttr(c->ch, str_name)) == NULL) goto out;
    if (c->events == NULL && (c->events = PyObject_GetAttr(proto, str_events)) == NULL) goto out;
    done = -1;
    if (PySet_Add(lent, iid) < 0) goto out;
    /* MessageReceived(name, chunk, iid), made as tuple.__new__ makes a tuple
     * subclass's instance (the protocol's way), without the argument tuples */
    PyTypeObject *type = (PyTypeObject *)MessageReceived;
    if ((event = type->tp_alloc(type, 3)) == NULL) goto out;
    PyTuple_SET_ITEM(event, 0, Py_NewRef(c->name));
    PyTuple_SET_ITEM(event, 1, Py_NewRef(chunk));
    PyTuple_SET_ITEM(event, 2, Py_NewRef(iid));
    PyObject *r = PyObject_CallMethodOneArg(c->events, str_append, event);
    if (r == NULL) goto out;
    Py_DECREF(r);
    done = 1;
out:
    if (done == 0 && PyErr_Occurred()) done = -1;
    Py_XDECREF(event);
    return done;
}

/* What GlinkProtocol.receive_rx_done does with an intent in use on an open channel
 * while no IntentsAvailable is watched for: given back (and free again if ``reuse``).
 * As fast_data: 1, 0 or -1. */
static int fast_rx_done(PyObject *proto, long cid, PyObject *vcid, PyObject *iid, int reuse,
                        Cache *c) {
    if (reuse) {
        PyObject *watch = PyObject_GetAttr(proto, str_watch_intents);
        if (watch == NULL) return -1;
        int watched = PyObject_IsTrue(watch);
        Py_DECREF(watch);
        if (watched != 0) return watched < 0 ? -1 : 0;
    }
    int done = peer_channel(proto, cid, vcid, c);
    if (done <= 0) return done;
    done = 0;
    PyObject *used, *free_, *size = NULL;
    if ((used = channel_field(c, &c->used, str_used_intents, &PyDict_Type)) == NULL) goto out;
    if ((free_ = channel_field(c, &c->free_, str_free_intents, &PyDict_Type)) == NULL) goto out;
    size = PyDict_GetItemWithError(used, iid);
    if (size == NULL) goto out;
    Py_INCREF(size);
    done = -1;
    if (PyDict_DelItem(used, iid) < 0) goto out;
    if (reuse && PyDict_SetItem(free_, iid, size) < 0) goto out;
    done = 1;
out:
    if (done == 0 && PyErr_Occurred()) done = -1;
    Py_XDECREF(size);
    return done;
}

static PyObject *feed(FifoEnd *s, PyObject *proto, Cache *c) {
    /* The common cases are done here for a GlinkProtocol itself (a subclass may
     * override the methods). */
    int fast = Py_TYPE(proto) == (PyTypeObject *)GlinkProtocol;
    Access a;
    if (begin(s, &a) < 0) return NULL;
    int64_t head = peer_index(s, &a);
    if (head < 0) {
        finish(&a);
        return NULL;
    }
    s->seen = head;
    /* What the pure feed keeps in locals, so kept here (Python may assign the fields
     * while the protocol runs). */
    Py_ssize_t pos = s->pos, mask = s->mask, size = s->size;
    Py_ssize_t stop = (head - pos) & mask;  /* offsets past the tail */
    Py_ssize_t at = 0;
    uint8_t hdr[DATA_HDR_SIZE];
    PyObject *stack[6];
    while (stop - at >= HDR_SIZE) {
        /* begin() checked the fields again, but they may now differ from the locals */
        if (s->size != size) {
            finish(&a);
            PyErr_SetString(PyExc_ValueError, "the FIFO changed while it was read");
            return NULL;
        }
        Py_ssize_t n = stop - at >= DATA_HDR_SIZE ? DATA_HDR_SIZE : HDR_SIZE;
        ring_read(s, &a, (pos + at) & mask, hdr, n);
        uint16_t cmd, p1;
        uint32_t p2, csize = 0, left = 0;
        memcpy(&cmd, hdr, 2);
        memcpy(&p1, hdr + 2, 2);
        memcpy(&p2, hdr + 4, 4);
        if (n == DATA_HDR_SIZE) {
            memcpy(&csize, hdr + 8, 4);
            memcpy(&left, hdr + 12, 4);
        }
        Py_ssize_t length;
        if (cmd == TX_DATA || cmd == TX_DATA_CONT) {
            uint64_t need = ((uint64_t)DATA_HDR_SIZE + csize + 7) & ~(uint64_t)7;
            if ((uint64_t)at + need > (uint64_t)stop) {  /* (not all there counts as too long) */
                if (stop - at >= DATA_HDR_SIZE && need >= (uint64_t)size) {
                    finish(&a);
                    return fifo_error(s, PyUnicode_FromFormat(
                        "a %llu-byte command cannot fit in the FIFO", (unsigned long long)need));
                }
                break;
            }
            length = (Py_ssize_t)need;
            PyObject *chunk = PyBytes_FromStringAndSize(NULL, csize);
            if (chunk == NULL) {
                finish(&a);
                return NULL;
            }
            ring_read(s, &a, (pos + at + DATA_HDR_SIZE) & mask, PyBytes_AS_STRING(chunk), csize);
            PyObject *v1 = PyLong_FromLong(p1), *v2 = PyLong_FromUnsignedLong(p2);
            PyObject *vl = PyLong_FromUnsignedLong(left);
            if (v1 == NULL || v2 == NULL || vl == NULL) {
                Py_XDECREF(v1);
                Py_XDECREF(v2);
                Py_XDECREF(vl);
                Py_DECREF(chunk);
                finish(&a);
                return NULL;
            }
            stack[1] = v1;
            stack[2] = v2;
            stack[3] = chunk;
            stack[4] = vl;
            stack[5] = cmd == TX_DATA_CONT ? Py_True : Py_False;
            int rc = 0;
            if (fast && cmd == TX_DATA && left == 0) {
                finish(&a);  /* (it allocates: a collection may run Python) */
                rc = fast_data(proto, p1, v1, v2, chunk, c);
                if (rc == 0) {
                    cache_clear(c);  /* (the protocol's Python runs) */
                    rc = call_method(proto, str_receive_data, stack, 6);
                }
                if (rc >= 0) rc = begin(s, &a);
            } else {
                cache_clear(c);
                rc = call_proto(s, &a, proto, str_receive_data, stack, 6);
            }
            Py_DECREF(v1);
            Py_DECREF(v2);
            Py_DECREF(vl);
            Py_DECREF(chunk);
            if (rc < 0) return NULL;
        } else if (cmd == RX_DONE || cmd == RX_DONE_W_REUSE) {
            length = HDR_SIZE;
            PyObject *v1 = PyLong_FromLong(p1), *v2 = PyLong_FromUnsignedLong(p2);
            if (v1 == NULL || v2 == NULL) {
                Py_XDECREF(v1);
                Py_XDECREF(v2);
                finish(&a);
                return NULL;
            }
            stack[1] = v1;
            stack[2] = v2;
            stack[3] = cmd == RX_DONE_W_REUSE ? Py_True : Py_False;
            int rc = 0;
            if (fast) {
                finish(&a);
                rc = fast_rx_done(proto, p1, v1, v2, cmd == RX_DONE_W_REUSE, c);
                if (rc == 0) {
                    cache_clear(c);
                    rc = call_method(proto, str_receive_rx_done, stack, 4);
                }
                if (rc >= 0) rc = begin(s, &a);
            } else {
                cache_clear(c);
                rc = call_proto(s, &a, proto, str_receive_rx_done, stack, 4);
            }
            Py_DECREF(v1);
            Py_DECREF(v2);
            if (rc < 0) return NULL;
        } else {
            /* Any other command: framed and parsed by the pure reader's _feed_other. */
            PyObject *vat = PyLong_FromSsize_t(at), *vleft = PyLong_FromSsize_t(stop - at);
            if (vat == NULL || vleft == NULL) {
                Py_XDECREF(vat);
                Py_XDECREF(vleft);
                finish(&a);
                return NULL;
            }
            stack[0] = (PyObject *)s;
            stack[1] = proto;
            stack[2] = vat;
            stack[3] = vleft;
            finish(&a);
            cache_clear(c);
            PyObject *r = PyObject_VectorcallMethod(str_feed_other, stack, 4, NULL);
            Py_DECREF(vat);
            Py_DECREF(vleft);
            if (r == NULL) return NULL;
            if (r == Py_None) {
                Py_DECREF(r);
                if (begin(s, &a) < 0) return NULL;
                break;
            }
            int bad = arg_ssize(r, &length);
            Py_DECREF(r);
            if (bad < 0) return NULL;
            if (length < HDR_SIZE || length > stop - at) {
                PyErr_SetString(PyExc_ValueError, "_feed_other returned a bad length");
                return NULL;
            }
            if (begin(s, &a) < 0) return NULL;
        }
        at += length;
    }
    if (at) {
        pos = s->pos = (pos + at) & mask;
        s->total += at;
        BARRIER();
        a.words[s->mine_at] = (uint32_t)pos;  /* after the bytes were copied out */
    }
    finish(&a);
    return PyLong_FromSsize_t(at);
}

static PyObject *Reader_feed(FifoEnd *s, PyObject *proto) {
    if (protocol_types() < 0) return NULL;
    Cache c = CACHE_INIT;
    PyObject *r = feed(s, proto, &c);
    cache_clear(&c);
    return r;
}

static PyMethodDef Reader_methods[] = {
    {"feed", (PyCFunction)Reader_feed, METH_O, "FifoReader.feed, compiled."},
    {"settle", (PyCFunction)Reader_settle, METH_O, "FifoReader.settle, compiled."},
    {"pending_data", (PyCFunction)Reader_pending_data, METH_NOARGS,
     "FifoReader.pending_data, compiled."},
    {"set_polling", (PyCFunction)Reader_set_polling, METH_O, "FifoReader.set_polling, compiled."},
    {"pending", (PyCFunction)Reader_pending, METH_NOARGS, "FifoReader.pending, compiled."},
    {NULL, NULL, 0, NULL},
};

/* ---- the types and the module -------------------------------------------------------- */

#define END_SLOTS(methods)                             \
    {Py_tp_new, PyType_GenericNew},                    \
    {Py_tp_dealloc, FifoEnd_dealloc},                  \
    {Py_tp_traverse, FifoEnd_traverse},                \
    {Py_tp_clear, FifoEnd_clear},                      \
    {Py_tp_members, FifoEnd_members},                  \
    {Py_tp_methods, methods}

static PyType_Slot Writer_slots[] = {
    {Py_tp_doc, "The compiled methods of amplink.rpmsg.glink_fifo.FifoWriter (a base)."},
    END_SLOTS(Writer_methods),
    {0, NULL},
};

static PyType_Slot Reader_slots[] = {
    {Py_tp_doc, "The compiled methods of amplink.rpmsg.glink_fifo.FifoReader (a base)."},
    END_SLOTS(Reader_methods),
    {0, NULL},
};

static PyType_Spec Writer_spec = {
    .name = "amplink.rpmsg._glink.FifoWriter",
    .basicsize = sizeof(FifoEnd),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = Writer_slots,
};

static PyType_Spec Reader_spec = {
    .name = "amplink.rpmsg._glink.FifoReader",
    .basicsize = sizeof(FifoEnd),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = Reader_slots,
};

static int glink_exec(PyObject *m) {
    PyObject *errors = PyImport_ImportModule("amplink.errors");
    if (errors == NULL) return -1;
    FifoError = PyObject_GetAttrString(errors, "FifoError");
    Py_DECREF(errors);
    if (FifoError == NULL) return -1;
    PyObject *st = PyImport_ImportModule("struct");
    if (st == NULL) return -1;
    StructError = PyObject_GetAttrString(st, "error");
    Py_DECREF(st);
    if (StructError == NULL) return -1;
#define INTERN(var, s) if ((var = PyUnicode_InternFromString(s)) == NULL) return -1;
    INTERN(str_receive_data, "receive_data")
    INTERN(str_receive_rx_done, "receive_rx_done")
    INTERN(str_feed_other, "_feed_other")
    INTERN(str_clear, "clear")
    INTERN(str_rcids, "_rcids")
    INTERN(str_local_intents, "local_intents")
    INTERN(str_used_intents, "used_intents")
    INTERN(str_free_intents, "free_intents")
    INTERN(str_lent, "lent")
    INTERN(str_events, "events")
    INTERN(str_watch_intents, "watch_intents")
    INTERN(str_name, "name")
    INTERN(str_append, "append")
#undef INTERN
    PyObject *writer = PyType_FromModuleAndSpec(m, &Writer_spec, NULL);
    if (writer == NULL || PyModule_AddObject(m, "FifoWriter", writer) < 0) {
        Py_XDECREF(writer);
        return -1;
    }
    PyObject *reader = PyType_FromModuleAndSpec(m, &Reader_spec, NULL);
    if (reader == NULL || PyModule_AddObject(m, "FifoReader", reader) < 0) {
        Py_XDECREF(reader);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot glink_slots[] = {
    {Py_mod_exec, glink_exec},
    {0, NULL},
};

static struct PyModuleDef glink_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "amplink.rpmsg._glink",
    .m_doc = "The hot methods of the GLINK FIFO ends, compiled (amplink.rpmsg.glink_ends "
             "chooses).",
    .m_size = 0,
    .m_slots = glink_slots,
};

PyMODINIT_FUNC PyInit__glink(void) { return PyModuleDef_Init(&glink_module); }
