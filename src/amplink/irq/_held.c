/* A section's entry and exit (amplink.irq.held_signals.HeldSignals.__enter__ and
 * __exit__), compiled: three of each per round trip of a message, on both sides; and
 * a taker's interruptible sleep (HeldSignals.poll), once per wait.
 *
 * amplink.irq.held_signals.HeldSignals is the reference, in pure Python.  This
 * module's Sections type is a base of it (amplink.irq.held_signals.compiled_sections
 * puts it first): __enter__, __exit__ and poll run here, with the same answers and the
 * same updates of the fields this type stores under the reference's names (_main,
 * depth, floor, _looks_in, _sigint, _sigterm, _pending, _interruptible); everything
 * else (__init__, _wrap, _deliver, _came, let_through...) is the reference's own code.  What is not on the
 * common path calls the reference's Python methods: _wrap (an outermost entry that
 * finds SIGINT's or SIGTERM's handler changed, or whose look at every handler is due)
 * and _deliver_held (an outermost exit with signals held).  No shared memory is read
 * here: nothing a peer writes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <signal.h>

typedef struct {
    PyObject_HEAD
    unsigned long main;  /* the main thread's ident (threading.get_ident()'s) */
    int depth;
    int floor;
    int looks_in;
    PyObject *sigint;  /* SIGINT's and SIGTERM's handlers, as last wrapped */
    PyObject *sigterm;
    PyObject *pending; /* a dict: the held signals */
    char interruptible; /* a signal now ends the sleep (HeldSignals.poll) */
} Sections;

static PyObject *getsignal; /* _signal.getsignal */
static PyObject *int_sigint, *int_sigterm;
static PyObject *str_wrap, *str_deliver_held, *str_poll;

/* Whether signal `sig`'s handler is not `known` (1), is (0), or an error (-1). */
static int changed(PyObject *sig, PyObject *known) {
    PyObject *h = PyObject_CallOneArg(getsignal, sig);
    if (h == NULL) return -1;
    int differs = h != known;
    Py_DECREF(h);
    return differs;
}

static PyObject *Sections_enter(Sections *s, PyObject *Py_UNUSED(ignored)) {
    if (PyThread_get_thread_ident() != s->main) return Py_NewRef(s);
    if (s->depth) {
        s->depth++;
        return Py_NewRef(s);
    }
    int looks_in = s->looks_in - 1;
    s->looks_in = looks_in;
    int wrap = looks_in <= 0;
    if (!wrap && (wrap = changed(int_sigint, s->sigint)) == 0)
        wrap = changed(int_sigterm, s->sigterm);
    if (wrap < 0) return NULL;
    if (wrap) { /* (a handler that raises meanwhile raises outside the section) */
        PyObject *r = PyObject_CallMethodNoArgs((PyObject *)s, str_wrap);
        if (r == NULL) return NULL;
        Py_DECREF(r);
    }
    s->depth = 1;
    return Py_NewRef(s);
}

static PyObject *Sections_exit(Sections *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "__exit__(exc_type, exc, tb)");
        return NULL;
    }
    if (PyThread_get_thread_ident() != s->main) Py_RETURN_NONE;
    int depth = s->depth - 1;
    s->depth = depth;
    if (s->pending == NULL || depth != s->floor) Py_RETURN_NONE;
    int any = PyDict_CheckExact(s->pending) ? PyDict_GET_SIZE(s->pending) != 0
                                            : PyObject_IsTrue(s->pending);
    if (any < 0) return NULL;
    if (!any) Py_RETURN_NONE;
    /* the reference's delivery, which cuts its own frames from what a handler raises */
    return PyObject_CallMethodNoArgs((PyObject *)s, str_deliver_held);
}

/* HeldSignals.poll: poller.poll(timeout_ms), a sleep a signal may end (its handler,
 * run by the poll's signal check, raises Held while `interruptible` is set). */
static PyObject *Sections_poll(Sections *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "poll(poller, timeout_ms)");
        return NULL;
    }
    PyObject *call[2] = {args[0], args[1]};
    if (PyThread_get_thread_ident() != s->main)
        return PyObject_VectorcallMethod(str_poll, call, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                         NULL);
    s->interruptible = 1; /* before the look: a signal after it ends the sleep */
    PyObject *r;
    int any = 0;
    if (s->pending != NULL && s->depth == s->floor + 1) {
        any = PyDict_CheckExact(s->pending) ? PyDict_GET_SIZE(s->pending) != 0
                                            : PyObject_IsTrue(s->pending);
    }
    if (any < 0) r = NULL;
    else if (any) r = Py_NewRef(Py_None);
    else r = PyObject_VectorcallMethod(str_poll, call, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    s->interruptible = 0;
    return r;
}

static int Sections_traverse(Sections *s, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(s));
    Py_VISIT(s->sigint);
    Py_VISIT(s->sigterm);
    Py_VISIT(s->pending);
    return 0;
}

static int Sections_clear(Sections *s) {
    Py_CLEAR(s->sigint);
    Py_CLEAR(s->sigterm);
    Py_CLEAR(s->pending);
    return 0;
}

static void Sections_dealloc(Sections *s) {
    PyTypeObject *tp = Py_TYPE(s);
    PyObject_GC_UnTrack(s);
    Sections_clear(s);
    tp->tp_free((PyObject *)s);
    Py_DECREF(tp);
}

static PyMemberDef Sections_members[] = {
    {"_main", T_ULONG, offsetof(Sections, main), 0, NULL},
    {"depth", T_INT, offsetof(Sections, depth), 0, NULL},
    {"floor", T_INT, offsetof(Sections, floor), 0, NULL},
    {"_looks_in", T_INT, offsetof(Sections, looks_in), 0, NULL},
    {"_sigint", T_OBJECT, offsetof(Sections, sigint), 0, NULL},
    {"_sigterm", T_OBJECT, offsetof(Sections, sigterm), 0, NULL},
    {"_pending", T_OBJECT_EX, offsetof(Sections, pending), 0, NULL},
    {"_interruptible", T_BOOL, offsetof(Sections, interruptible), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef Sections_methods[] = {
    {"__enter__", (PyCFunction)Sections_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))Sections_exit, METH_FASTCALL, NULL},
    {"poll", (PyCFunction)(void (*)(void))Sections_poll, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Sections_slots[] = {
    {Py_tp_doc, "The compiled section entry and exit of amplink.irq.held_signals.HeldSignals "
                "(a base)."},
    {Py_tp_dealloc, Sections_dealloc},
    {Py_tp_traverse, Sections_traverse},
    {Py_tp_clear, Sections_clear},
    {Py_tp_members, Sections_members},
    {Py_tp_methods, Sections_methods},
    {0, NULL},
};

static PyType_Spec Sections_spec = {
    .name = "amplink.irq._held.Sections",
    .basicsize = sizeof(Sections),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = Sections_slots,
};

static int held_exec(PyObject *m) {
    PyObject *sig = PyImport_ImportModule("_signal");
    if (sig == NULL) return -1;
    getsignal = PyObject_GetAttrString(sig, "getsignal");
    Py_DECREF(sig);
    if (getsignal == NULL) return -1;
    if ((int_sigint = PyLong_FromLong(SIGINT)) == NULL) return -1;
    if ((int_sigterm = PyLong_FromLong(SIGTERM)) == NULL) return -1;
    if ((str_wrap = PyUnicode_InternFromString("_wrap")) == NULL) return -1;
    if ((str_deliver_held = PyUnicode_InternFromString("_deliver_held")) == NULL) return -1;
    if ((str_poll = PyUnicode_InternFromString("poll")) == NULL) return -1;
    PyObject *sections = PyType_FromModuleAndSpec(m, &Sections_spec, NULL);
    if (sections == NULL || PyModule_AddObject(m, "Sections", sections) < 0) {
        Py_XDECREF(sections);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot held_slots[] = {
    {Py_mod_exec, held_exec},
    {0, NULL},
};

static struct PyModuleDef held_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "amplink.irq._held",
    .m_doc = "A section's entry and exit, compiled (amplink.irq.held_signals chooses).",
    .m_size = 0,
    .m_slots = held_slots,
};

PyMODINIT_FUNC PyInit__held(void) { return PyModuleDef_Init(&held_module); }
