/* The flowlens._native module: its functions and types. */
#include "native.h"

#ifndef FLOWLENS_NATIVE_SOURCE
#define FLOWLENS_NATIVE_SOURCE "unknown"
#endif

static PyMethodDef methods[] = {
    {"set_schema", py_set_schema, METH_VARARGS,
     "set_schema(messages, enums): the protobuf descriptor tables every decoder uses."},
    {"jsonpb", py_jsonpb, METH_VARARGS,
     "jsonpb(payloads, message) -> [bytes | None]: hubble's jsonpb line of each serialized "
     "message (None where the reference encoder must answer)."},
    {"compact_keys", py_compact_keys, METH_VARARGS,
     "compact_keys(text) -> [(codes, keys)] * 6 | None: hubble's compact lines split into the "
     "six keys flowlens.sources.text reads, each dictionary-encoded; None when a line is not "
     "one its regex matches."},
    {"set_render_tables", py_set_render_tables, METH_VARARGS,
     "set_render_tables(verdict_unknown, policy_verdict_text, direction_unknown, reserved, "
     "port_protocols, auth_disabled): the tables of flowlens._hubble the renderer uses."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "flowlens._native",
    "The fast path of flowlens's decoders (see flowlens.sources.native).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    PyTypeObject *types[] = {&SplitterType, &RunType, &TableType};
    const char *names[] = {"Splitter", "Run", "Table"};
    for (int i = 0; i < 3; i++) {
        if (PyType_Ready(types[i]) < 0 || PyModule_AddObjectRef(m, names[i],
                                                                (PyObject *)types[i]) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    if (PyModule_AddStringConstant(m, "SOURCE", FLOWLENS_NATIVE_SOURCE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
