/* The hot register accessors of one side of the i.MX MU model, compiled.
 *
 * amplink.hw.imx_mu.ImxMuSide is the reference, in pure Python.  This module's MuSide
 * type is a base of it (amplink.hw.imx_mu.compiled_side puts it first): irq_active,
 * read_rr, write_tr and cr_update run here, with the same answers, the same state-word
 * updates, the same full fences and the same pulses; everything else (__init__, readl,
 * writel, status...) is the reference's own code, on the fields this type stores under
 * the reference's names (_w, _me, _peer, _cr, wire, peer_wire).  MuEvent is the
 * compiled twin of ImxMuSide.event_handler: an interrupt primary that answers
 * IRQ_NONE for an event that is not pending without running any Python.
 *
 * The state words are shared memory that the peer writes, so:
 *  - every call takes the buffer of _w again (a released view raises ValueError, as
 *    the pure code's indexing does) and checks that both sides' words lie inside it;
 *  - peer-written values are only compared and copied, never used as an index or a
 *    length: every word this reads is at an offset fixed by (_me, _peer), checked;
 *  - the buffer is released before anything that can run Python or drop the GIL (a
 *    pulse's write, the peer side's irq_active), and taken again after it.
 * The full fence is __atomic_thread_fence(__ATOMIC_SEQ_CST) (mfence on x86-64), where
 * the reference calls amplink.memory.barrier.full_fence.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <unistd.h>

#define NUM_CHANS 4
#define W_DATA 0
#define W_TXSEQ 4
#define W_RXACK 8
#define W_GIRSEQ 12
#define W_GIPACK 16
#define W_CR 20
#define SIDE_WORDS 21

#define GIP(n) (1u << (28 + 3 - (n)))
#define RF(n) (1u << (24 + 3 - (n)))
#define TE(n) (1u << (20 + 3 - (n)))
#define GIR(n) (1u << (16 + 3 - (n)))
#define GIR_ALL (GIR(0) | GIR(1) | GIR(2) | GIR(3))
#define CR_ENABLES 0xFFF00000u /* GIEn, RIEn, TIEn */

#define FENCE() __atomic_thread_fence(__ATOMIC_SEQ_CST)

static PyObject *IrqWireType; /* amplink.irq.line.IrqWire: pulsed by a write of its own */
static PyTypeObject *MuSideType; /* MuEvent's side must be one (its fields are read) */
static PyObject *str_fd, *str_pulse, *str_peer_side, *str_irq_active;

typedef struct {
    PyObject_HEAD
    PyObject *w;         /* "_w": the unit's state words (a memoryview of 'I') */
    Py_ssize_t me;       /* "_me": the index of this side's first word */
    Py_ssize_t peer;     /* "_peer": the peer side's */
    Py_ssize_t cr;       /* "_cr": this side's CR word */
    PyObject *wire;      /* this side's interrupt output (IrqWire or None) */
    PyObject *peer_wire; /* the peer side's */
} MuSide;

/* The words of one call: taken at its start, released before anything else runs. */
typedef struct {
    Py_buffer buf;
    volatile uint32_t *w;
} Words;

static int take(MuSide *s, Words *a) {
    if (s->w == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_w");
        return -1;
    }
    if (PyObject_GetBuffer(s->w, &a->buf, PyBUF_WRITABLE) < 0) return -1;
    Py_ssize_t words = a->buf.len / 4;
    if (s->me < 0 || s->peer < 0 || s->me > words - SIDE_WORDS || s->peer > words - SIDE_WORDS ||
        s->cr < 0 || s->cr >= words || ((uintptr_t)a->buf.buf & 3) != 0) {
        PyBuffer_Release(&a->buf);
        PyErr_SetString(PyExc_ValueError, "the MU side's words lie outside its state buffer");
        return -1;
    }
    a->w = (volatile uint32_t *)a->buf.buf;
    return 0;
}

static inline void give_back(Words *a) { PyBuffer_Release(&a->buf); }

/* Whether an event in ``mask`` (CR enable bits) is pending for the side whose words
 * begin at ``me`` (its peer's at ``peer``): ImxMuSide.irq_active's comparisons. */
static int any_pending(volatile uint32_t *w, Py_ssize_t me, Py_ssize_t peer, uint32_t mask) {
    for (int n = 0; n < NUM_CHANS; n++) {
        if ((mask & GIP(n)) && w[peer + W_GIRSEQ + n] != w[me + W_GIPACK + n]) return 1;
        if ((mask & RF(n)) && w[peer + W_TXSEQ + n] != w[me + W_RXACK + n]) return 1;
        if ((mask & TE(n)) && w[me + W_TXSEQ + n] == w[peer + W_RXACK + n]) return 1;
    }
    return 0;
}

/* IrqWire.pulse on ``wire`` (None: no wire): one 8-byte write, the GIL released, a
 * full or closed line ignored; another type of wire gets its own pulse() called.
 * Called with no buffer held.  0, or -1 with an exception set. */
static int pulse_wire(PyObject *wire);

static int pulse(PyObject *wire) {
    if (wire == NULL || wire == Py_None) return 0;
    Py_INCREF(wire); /* (Python it runs may replace the side's wire meanwhile) */
    int r = pulse_wire(wire);
    Py_DECREF(wire);
    return r;
}

static int pulse_wire(PyObject *wire) {
    if ((PyObject *)Py_TYPE(wire) != IrqWireType) {
        PyObject *r = PyObject_CallMethodNoArgs(wire, str_pulse);
        if (r == NULL) return -1;
        Py_DECREF(r);
        return 0;
    }
    PyObject *fdo = PyObject_GetAttr(wire, str_fd);
    if (fdo == NULL) return -1;
    long fdl = PyLong_AsLong(fdo);
    Py_DECREF(fdo);
    if (fdl == -1 && PyErr_Occurred()) return -1;
    if (fdl < INT_MIN || fdl > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "a wire's fd must fit an int");
        return -1;
    }
    int fd = (int)fdl;
    static const uint64_t one = 1;
    for (;;) {
        ssize_t r;
        int err;
        Py_BEGIN_ALLOW_THREADS
        r = write(fd, &one, sizeof one);
        err = errno;
        Py_END_ALLOW_THREADS
        if (r >= 0) return 0;
        if (err == EAGAIN || err == EPIPE) return 0; /* pending already / nobody reads */
        if (err == EINTR) {                          /* as os.write: handlers, then retry */
            if (PyErr_CheckSignals() < 0) return -1;
            continue;
        }
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
}

static int arg_index(PyObject *v, Py_ssize_t *n) {
    *n = PyNumber_AsSsize_t(v, PyExc_OverflowError);
    if (*n == -1 && PyErr_Occurred()) return -1;
    if (*n < 0 || *n >= NUM_CHANS) {
        PyErr_Format(PyExc_ValueError, "MU data register %zd does not exist (0..3)", *n);
        return -1;
    }
    return 0;
}

static int arg_mask(PyObject *v, uint64_t *out) {
    if (!PyLong_Check(v)) {
        PyErr_Format(PyExc_TypeError, "register bits must be an int, not %.100s",
                     Py_TYPE(v)->tp_name);
        return -1;
    }
    *out = (uint64_t)PyLong_AsUnsignedLongLongMask(v); /* low bits of Python's two's complement */
    return (*out == (uint64_t)-1 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *MuSide_irq_active(MuSide *s, PyObject *Py_UNUSED(ignored)) {
    Words a;
    if (take(s, &a) < 0) return NULL;
    uint32_t cr = a.w[s->cr];
    int active = cr && any_pending(a.w, s->me, s->peer, cr);
    give_back(&a);
    return PyBool_FromLong(active);
}

static PyObject *MuSide_read_rr(MuSide *s, PyObject *arg) {
    Py_ssize_t n;
    if (arg_index(arg, &n) < 0) return NULL;
    Words a;
    if (take(s, &a) < 0) return NULL;
    volatile uint32_t *w = a.w;
    uint32_t seq = w[s->peer + W_TXSEQ + n];
    uint32_t value = w[s->peer + W_DATA + n];
    Py_ssize_t ack = s->me + W_RXACK + n;
    int raise = 0;
    if (w[ack] != seq) {
        w[ack] = seq;
        FENCE(); /* a Dekker handshake with the peer's CR write (hw/mmio.py) */
        raise = (w[s->peer + W_CR] & TE(n)) != 0; /* TIEn: the peer's TEn is set now */
    }
    give_back(&a);
    if (raise && pulse(s->peer_wire) < 0) return NULL;
    return PyLong_FromUnsignedLong(value);
}

static PyObject *MuSide_write_tr(MuSide *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "write_tr(n, value)");
        return NULL;
    }
    Py_ssize_t n;
    uint64_t value;
    if (arg_index(args[0], &n) < 0 || arg_mask(args[1], &value) < 0) return NULL;
    Words a;
    if (take(s, &a) < 0) return NULL;
    volatile uint32_t *w = a.w;
    w[s->me + W_DATA + n] = (uint32_t)value;
    Py_ssize_t seq = s->me + W_TXSEQ + n;
    w[seq] = w[seq] + 1;
    FENCE(); /* a Dekker handshake with the peer's CR write (hw/mmio.py) */
    int raise = (w[s->peer + W_CR] & RF(n)) != 0; /* RIEn: the peer's RFn is set now */
    give_back(&a);
    if (raise && pulse(s->peer_wire) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *MuSide_cr_update(MuSide *s, PyObject *const *args, size_t nargsf,
                                  PyObject *kwnames) {
    /* cr_update(set_bits=0, clear_bits=0), positional or by keyword (a vectorcall: no
     * argument tuple on the message path) */
    PyObject *set_o = NULL, *clear_o = NULL;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "cr_update() takes at most 2 arguments");
        return NULL;
    }
    if (nargs > 0) set_o = args[0];
    if (nargs > 1) clear_o = args[1];
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        PyObject **slot = NULL;
        if (PyUnicode_CompareWithASCIIString(key, "set_bits") == 0) slot = &set_o;
        else if (PyUnicode_CompareWithASCIIString(key, "clear_bits") == 0) slot = &clear_o;
        if (slot == NULL) {
            PyErr_Format(PyExc_TypeError, "cr_update() got an unexpected keyword argument '%U'",
                         key);
            return NULL;
        }
        if (*slot != NULL) {
            PyErr_Format(PyExc_TypeError, "cr_update() got multiple values for argument '%U'",
                         key);
            return NULL;
        }
        *slot = args[nargs + i];
    }
    uint64_t set_bits = 0, clear_bits = 0;
    if ((set_o && arg_mask(set_o, &set_bits) < 0) || (clear_o && arg_mask(clear_o, &clear_bits) < 0))
        return NULL;
    Words a;
    if (take(s, &a) < 0) return NULL;
    volatile uint32_t *w = a.w;
    uint32_t old = w[s->cr];
    uint64_t value = ((uint64_t)old & ~clear_bits) | set_bits;
    uint32_t new = (uint32_t)value & CR_ENABLES;
    w[s->cr] = new;
    uint32_t gained = new & ~old;
    int raise = 0;
    if (gained) {
        FENCE(); /* an event just enabled that is pending makes the output active */
        raise = any_pending(w, s->me, s->peer, gained);
    }
    give_back(&a);
    if (raise && pulse(s->wire) < 0) return NULL;
    if (!((uint32_t)value & GIR_ALL)) Py_RETURN_NONE;
    if (take(s, &a) < 0) return NULL;
    for (int n = 0; n < NUM_CHANS; n++) {
        if ((uint32_t)value & GIR(n)) {
            Py_ssize_t girseq = s->me + W_GIRSEQ + n;
            a.w[girseq] = a.w[girseq] + 1;
        }
    }
    FENCE();
    give_back(&a);
    /* ImxMuSide._peer_changed: the peer side's own irq_active says whether to pulse */
    PyObject *peer = PyObject_GetAttr((PyObject *)s, str_peer_side);
    if (peer == NULL) return NULL;
    int active = 0;
    if (peer != Py_None) {
        PyObject *r = PyObject_CallMethodNoArgs(peer, str_irq_active);
        if (r != NULL) {
            active = PyObject_IsTrue(r);
            Py_DECREF(r);
        }
        if (r == NULL || active < 0) {
            Py_DECREF(peer);
            return NULL;
        }
    }
    Py_DECREF(peer);
    if (active && pulse(s->peer_wire) < 0) return NULL;
    Py_RETURN_NONE;
}

/* MuEvent: an interrupt primary for one event of a side (ImxMuSide.event_handler's
 * compiled twin).  Called as handler(irq, dev_id) on every interrupt of the shared
 * line: it answers IRQ_NONE (0) itself when the event is not pending and enabled, and
 * calls the driver's handler(irq, dev_id) (and returns what that returns) when it is.
 * The words are taken, compared and released before the handler runs. */
typedef struct {
    PyObject_HEAD
    MuSide *side;
    uint32_t bit; /* the SR bit (its CR enable bit has the same position) */
    PyObject *handler;
    vectorcallfunc vectorcall;
} MuEvent;

static PyObject *MuEvent_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                    PyObject *kwnames) {
    MuEvent *e = (MuEvent *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 2 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "an interrupt primary takes (irq, dev_id)");
        return NULL;
    }
    MuSide *s = e->side;
    Words a;
    if (take(s, &a) < 0) return NULL;
    int pending = (a.w[s->cr] & e->bit) && any_pending(a.w, s->me, s->peer, e->bit);
    give_back(&a);
    if (!pending) return PyLong_FromLong(0); /* IRQ_NONE */
    return PyObject_Vectorcall(e->handler, args, nargs, NULL);
}

static PyObject *MuEvent_new(PyTypeObject *tp, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"side", "bit", "handler", NULL};
    PyObject *side, *bit_o, *handler;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO:MuEvent", names, &side, &bit_o,
                                     &handler))
        return NULL;
    if (!PyObject_TypeCheck(side, MuSideType)) {
        PyErr_SetString(PyExc_TypeError, "side must be a compiled MU side");
        return NULL;
    }
    uint64_t bit;
    if (arg_mask(bit_o, &bit) < 0) return NULL;
    if (bit == 0 || (bit & (bit - 1)) != 0 || (bit & ~(uint64_t)CR_ENABLES) != 0) {
        PyErr_Format(PyExc_ValueError, "%#llx is not one SR event bit", (unsigned long long)bit);
        return NULL;
    }
    if (!PyCallable_Check(handler)) {
        PyErr_SetString(PyExc_TypeError, "handler must be callable");
        return NULL;
    }
    MuEvent *e = (MuEvent *)tp->tp_alloc(tp, 0);
    if (e == NULL) return NULL;
    Py_INCREF(side);
    e->side = (MuSide *)side;
    e->bit = (uint32_t)bit;
    Py_INCREF(handler);
    e->handler = handler;
    e->vectorcall = MuEvent_vectorcall;
    return (PyObject *)e;
}

static int MuEvent_traverse(MuEvent *e, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(e));
    Py_VISIT(e->side);
    Py_VISIT(e->handler);
    return 0;
}

static int MuEvent_clear(MuEvent *e) {
    Py_CLEAR(e->side);
    Py_CLEAR(e->handler);
    return 0;
}

static void MuEvent_dealloc(MuEvent *e) {
    PyTypeObject *tp = Py_TYPE(e);
    PyObject_GC_UnTrack(e);
    MuEvent_clear(e);
    tp->tp_free((PyObject *)e);
    Py_DECREF(tp);
}

static PyMemberDef MuEvent_members[] = {
    {"handler", T_OBJECT, offsetof(MuEvent, handler), READONLY, NULL},
    {"bit", T_UINT, offsetof(MuEvent, bit), READONLY, NULL},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(MuEvent, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot MuEvent_slots[] = {
    {Py_tp_doc, "An MU event's interrupt primary (amplink.hw.imx_mu.ImxMuSide.event_handler)."},
    {Py_tp_new, MuEvent_new},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_dealloc, MuEvent_dealloc},
    {Py_tp_traverse, MuEvent_traverse},
    {Py_tp_clear, MuEvent_clear},
    {Py_tp_members, MuEvent_members},
    {0, NULL},
};

static PyType_Spec MuEvent_spec = {
    .name = "amplink.hw._mu.MuEvent",
    .basicsize = sizeof(MuEvent),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = MuEvent_slots,
};

static int MuSide_traverse(MuSide *s, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(s));
    Py_VISIT(s->w);
    Py_VISIT(s->wire);
    Py_VISIT(s->peer_wire);
    return 0;
}

static int MuSide_clear(MuSide *s) {
    Py_CLEAR(s->w);
    Py_CLEAR(s->wire);
    Py_CLEAR(s->peer_wire);
    return 0;
}

static void MuSide_dealloc(MuSide *s) {
    PyTypeObject *tp = Py_TYPE(s);
    PyObject_GC_UnTrack(s);
    MuSide_clear(s);
    tp->tp_free((PyObject *)s);
    Py_DECREF(tp);
}

static PyMemberDef MuSide_members[] = {
    {"_w", T_OBJECT_EX, offsetof(MuSide, w), 0, NULL},
    {"_me", T_PYSSIZET, offsetof(MuSide, me), 0, NULL},
    {"_peer", T_PYSSIZET, offsetof(MuSide, peer), 0, NULL},
    {"_cr", T_PYSSIZET, offsetof(MuSide, cr), 0, NULL},
    {"wire", T_OBJECT, offsetof(MuSide, wire), 0, NULL},
    {"peer_wire", T_OBJECT, offsetof(MuSide, peer_wire), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef MuSide_methods[] = {
    {"irq_active", (PyCFunction)MuSide_irq_active, METH_NOARGS, NULL},
    {"read_rr", (PyCFunction)MuSide_read_rr, METH_O, NULL},
    {"write_tr", (PyCFunction)(void (*)(void))MuSide_write_tr, METH_FASTCALL, NULL},
    {"cr_update", (PyCFunction)(void (*)(void))MuSide_cr_update, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot MuSide_slots[] = {
    {Py_tp_doc, "The compiled accessors of amplink.hw.imx_mu.ImxMuSide (a base)."},
    {Py_tp_dealloc, MuSide_dealloc},
    {Py_tp_traverse, MuSide_traverse},
    {Py_tp_clear, MuSide_clear},
    {Py_tp_members, MuSide_members},
    {Py_tp_methods, MuSide_methods},
    {0, NULL},
};

static PyType_Spec MuSide_spec = {
    .name = "amplink.hw._mu.MuSide",
    .basicsize = sizeof(MuSide),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = MuSide_slots,
};

static int mu_exec(PyObject *m) {
    PyObject *line = PyImport_ImportModule("amplink.irq.line");
    if (line == NULL) return -1;
    IrqWireType = PyObject_GetAttrString(line, "IrqWire");
    Py_DECREF(line);
    if (IrqWireType == NULL) return -1;
#define INTERN(var, s) if ((var = PyUnicode_InternFromString(s)) == NULL) return -1;
    INTERN(str_fd, "fd")
    INTERN(str_pulse, "pulse")
    INTERN(str_peer_side, "peer_side")
    INTERN(str_irq_active, "irq_active")
#undef INTERN
    PyObject *side = PyType_FromModuleAndSpec(m, &MuSide_spec, NULL);
    if (side == NULL || PyModule_AddObject(m, "MuSide", side) < 0) {
        Py_XDECREF(side);
        return -1;
    }
    MuSideType = (PyTypeObject *)side; /* (the module holds the reference) */
    PyObject *event = PyType_FromModuleAndSpec(m, &MuEvent_spec, NULL);
    if (event == NULL || PyModule_AddObject(m, "MuEvent", event) < 0) {
        Py_XDECREF(event);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot mu_slots[] = {
    {Py_mod_exec, mu_exec},
    {0, NULL},
};

static struct PyModuleDef mu_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "amplink.hw._mu",
    .m_doc = "The hot accessors of the i.MX MU model's side, compiled (amplink.hw.imx_mu "
             "chooses).",
    .m_size = 0,
    .m_slots = mu_slots,
};

PyMODINIT_FUNC PyInit__mu(void) { return PyModuleDef_Init(&mu_module); }
