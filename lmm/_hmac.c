/*
 * lmm._hmac: the signaling's MAC in one call (issue 12).
 *
 * An Authenticator keeps RFC 2104's keyed inner and outer hash states with
 * the two addresses that begin every Mobility Data (RFC 4285 5.1) hashed into
 * the inner one, so a MAC is two struct copies, two short updates and two
 * finals, with no Python object made on the way. lmm.security uses it when it
 * was built (setup.py builds it where a compiler and libcrypto are found) and
 * its own hashlib version otherwise; tests/test_security.py checks the two,
 * and both against Python's hmac, on the same inputs.
 *
 * OpenSSL's SHA1_* and SHA256_* functions are deprecated in OpenSSL 3 in
 * favour of EVP, whose context copy costs what this module saves; they are
 * still in every OpenSSL 3 release.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>
#include <structmember.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>

#define BLOCK 64 /* SHA-1's and SHA-256's block, bytes */

typedef struct {
    PyObject_HEAD
    int sha256; /* 1: SHA-256, 0: SHA-1 */
    Py_ssize_t length;
    PyObject *sa;
    unsigned int spi;
    union { SHA_CTX sha1; SHA256_CTX sha256; } inner, outer;
} Authenticator;

/* First(length, HMAC(key, pair | head)) into out (at least 32 bytes). head
 * is taken with its bytes 4 and 5 (the checksum) as zero when zeroChecksum. */
static void
authenticate(Authenticator *self, const unsigned char *head, Py_ssize_t size,
             int zeroChecksum, unsigned char *out)
{
    static const unsigned char zero[2] = {0, 0};
    if (self->sha256) {
        SHA256_CTX ctx = self->inner.sha256;
        if (zeroChecksum) {
            SHA256_Update(&ctx, head, 4);
            SHA256_Update(&ctx, zero, 2);
            SHA256_Update(&ctx, head + 6, size - 6);
        } else {
            SHA256_Update(&ctx, head, size);
        }
        SHA256_Final(out, &ctx);
        ctx = self->outer.sha256;
        SHA256_Update(&ctx, out, SHA256_DIGEST_LENGTH);
        SHA256_Final(out, &ctx);
    } else {
        SHA_CTX ctx = self->inner.sha1;
        if (zeroChecksum) {
            SHA1_Update(&ctx, head, 4);
            SHA1_Update(&ctx, zero, 2);
            SHA1_Update(&ctx, head + 6, size - 6);
        } else {
            SHA1_Update(&ctx, head, size);
        }
        SHA1_Final(out, &ctx);
        ctx = self->outer.sha1;
        SHA1_Update(&ctx, out, SHA_DIGEST_LENGTH);
        SHA1_Final(out, &ctx);
    }
}

static int
Authenticator_init(Authenticator *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"sa", "spi", "length", "digest", "key", "pair", NULL};
    PyObject *sa;
    unsigned int spi;
    Py_ssize_t length;
    const char *digest;
    Py_buffer key, pair;
    unsigned char pad[BLOCK], hashed[SHA256_DIGEST_LENGTH];
    const unsigned char *k;
    Py_ssize_t klen;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OInsy*y*", keywords,
                                     &sa, &spi, &length, &digest, &key, &pair))
        return -1;
    if (strcmp(digest, "sha256") == 0) {
        self->sha256 = 1;
    } else if (strcmp(digest, "sha1") == 0) {
        self->sha256 = 0;
    } else {
        PyErr_Format(PyExc_ValueError, "digest %s: expected sha1 or sha256", digest);
        goto fail;
    }
    if (length < 1 || length > (self->sha256 ? SHA256_DIGEST_LENGTH : SHA_DIGEST_LENGTH)) {
        PyErr_Format(PyExc_ValueError, "length %zd: more than the digest or none", length);
        goto fail;
    }
    k = key.buf;
    klen = key.len;
    if (klen > BLOCK) { /* RFC 2104 2: a longer key is hashed first */
        if (self->sha256)
            SHA256(k, klen, hashed);
        else
            SHA1(k, klen, hashed);
        k = hashed;
        klen = self->sha256 ? SHA256_DIGEST_LENGTH : SHA_DIGEST_LENGTH;
    }
    for (int which = 0; which < 2; which++) {
        memset(pad, which ? 0x5c : 0x36, BLOCK);
        for (Py_ssize_t i = 0; i < klen; i++)
            pad[i] ^= k[i];
        if (self->sha256) {
            SHA256_CTX *ctx = which ? &self->outer.sha256 : &self->inner.sha256;
            SHA256_Init(ctx);
            SHA256_Update(ctx, pad, BLOCK);
        } else {
            SHA_CTX *ctx = which ? &self->outer.sha1 : &self->inner.sha1;
            SHA1_Init(ctx);
            SHA1_Update(ctx, pad, BLOCK);
        }
    }
    if (self->sha256)
        SHA256_Update(&self->inner.sha256, pair.buf, pair.len);
    else
        SHA1_Update(&self->inner.sha1, pair.buf, pair.len);
    OPENSSL_cleanse(pad, sizeof pad);
    OPENSSL_cleanse(hashed, sizeof hashed);
    self->spi = spi;
    self->length = length;
    Py_INCREF(sa);
    Py_XSETREF(self->sa, sa);
    PyBuffer_Release(&key);
    PyBuffer_Release(&pair);
    return 0;
fail:
    PyBuffer_Release(&key);
    PyBuffer_Release(&pair);
    return -1;
}

static void
Authenticator_dealloc(Authenticator *self)
{
    OPENSSL_cleanse(&self->inner, sizeof self->inner);
    OPENSSL_cleanse(&self->outer, sizeof self->outer);
    Py_XDECREF(self->sa);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* authenticator(data): First(length, HMAC(key, pair | data)). */
static PyObject *
Authenticator_call(Authenticator *self, PyObject *args, PyObject *kwds)
{
    Py_buffer data;
    unsigned char out[SHA256_DIGEST_LENGTH];
    if (kwds != NULL && PyDict_GET_SIZE(kwds) > 0) {
        PyErr_SetString(PyExc_TypeError, "an Authenticator takes no keywords");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*", &data))
        return NULL;
    authenticate(self, data.buf, data.len, 0, out);
    PyBuffer_Release(&data);
    return PyBytes_FromStringAndSize((const char *)out, self->length);
}

/* check(data, covered, expected): whether expected is the MAC of data's first
 * covered bytes, the checksum (bytes 4 and 5) taken as zero (RFC 4285 5.1);
 * compared in constant time. */
static PyObject *
Authenticator_check(Authenticator *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, expected;
    Py_ssize_t covered;
    unsigned char out[SHA256_DIGEST_LENGTH];
    int same;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "check(data, covered, expected)");
        return NULL;
    }
    covered = PyLong_AsSsize_t(args[1]);
    if (covered == -1 && PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[2], &expected, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (covered < 6 || covered > data.len) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&expected);
        PyErr_Format(PyExc_ValueError, "covered %zd: outside 6..%zd", covered, data.len);
        return NULL;
    }
    authenticate(self, data.buf, covered, 1, out);
    same = expected.len == self->length
           && CRYPTO_memcmp(out, expected.buf, (size_t)self->length) == 0;
    PyBuffer_Release(&data);
    PyBuffer_Release(&expected);
    return PyBool_FromLong(same);
}

static PyMethodDef Authenticator_methods[] = {
    {"check", (PyCFunction)(void (*)(void))Authenticator_check, METH_FASTCALL,
     "check(data, covered, expected) -> bool: expected is the MAC of data[:covered],"
     " checksum zero."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Authenticator_members[] = {
    {"sa", T_OBJECT_EX, offsetof(Authenticator, sa), READONLY, "the security association"},
    {"spi", T_UINT, offsetof(Authenticator, spi), READONLY, "its Mobility SPI"},
    {"length", T_PYSSIZET, offsetof(Authenticator, length), READONLY, "MAC bytes kept"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject AuthenticatorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lmm._hmac.Authenticator",
    .tp_doc = "Authenticator(sa, spi, length, digest, key, pair): the MAC of one SA between"
              " one pair of addresses.",
    .tp_basicsize = sizeof(Authenticator),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Authenticator_init,
    .tp_dealloc = (destructor)Authenticator_dealloc,
    .tp_call = (ternaryfunc)Authenticator_call,
    .tp_methods = Authenticator_methods,
    .tp_members = Authenticator_members,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "lmm._hmac",
    "The signaling's HMAC with precomputed keyed states, in C (lmm.security).", -1, NULL,
};

PyMODINIT_FUNC
PyInit__hmac(void)
{
    PyObject *m;
    if (PyType_Ready(&AuthenticatorType) < 0)
        return NULL;
    m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&AuthenticatorType);
    if (PyModule_AddObject(m, "Authenticator", (PyObject *)&AuthenticatorType) < 0) {
        Py_DECREF(&AuthenticatorType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
