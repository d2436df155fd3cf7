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

/* The sealed layout (lmm.mh.encodeSealed, RFC 4285 5 and 6): what lmm.mh says,
 * repeated here for the hot path; lmm.security's tests check these against lmm.mh's
 * (the module exports them) and every output against lmm.mh's own. */
#define IPPROTO_NONE 59
#define OPT_PAD1 0
#define OPT_PADN 1
#define OPT_AUTHENTICATION 9
#define OPT_REPLAY_PROTECTION 10
#define MN_HA 1
#define MAX_HEADER_LENGTH 2048
#define NTP_EPOCH 2208988800.0

/* Padding of n bytes at p (RFC 6275 6.2.1: Pad1, or PadN of zeros). */
static void
pad(unsigned char *p, Py_ssize_t n)
{
    if (n == 1) {
        p[0] = OPT_PAD1;
    } else if (n > 1) {
        p[0] = OPT_PADN;
        p[1] = (unsigned char)(n - 2);
        memset(p + 2, 0, (size_t)n - 2);
    }
}

/* seal(body, mhType, timestamp): lmm.mh.encodeSealed's bytes for a message whose
 * fixed part and options (from offset 6, aligned, no tail padding) are body: its
 * Replay Protection option with timestamp, its Authentication option under this SA
 * (its MAC over the header up to the SPI, checksum zero), the padding. */
static PyObject *
Authenticator_seal(Authenticator *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer body;
    long mhType;
    unsigned long long timestamp;
    Py_ssize_t position, before, afterTimestamp, middle, end, tail, length, at;
    unsigned char mac[SHA256_DIGEST_LENGTH], *p;
    PyObject *result;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "seal(body, mhType, timestamp)");
        return NULL;
    }
    mhType = PyLong_AsLong(args[1]);
    if (mhType == -1 && PyErr_Occurred())
        return NULL;
    timestamp = PyLong_AsUnsignedLongLong(args[2]);
    if (timestamp == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (mhType < 0 || mhType > 255) {
        PyErr_Format(PyExc_ValueError, "MH type %ld: not a byte", mhType);
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &body, PyBUF_SIMPLE) < 0)
        return NULL;
    position = 6 + body.len;
    before = ((2 - position) % 8 + 8) % 8;
    afterTimestamp = position + before + 2 + 8;
    middle = ((1 - afterTimestamp) % 4 + 4) % 4;
    if ((afterTimestamp + middle + 7 + self->length) % 8
        && (afterTimestamp + middle + 4 + 7 + self->length) % 8 == 0)
        middle += 4;
    end = afterTimestamp + middle + 7 + self->length;
    tail = (8 - end % 8) % 8;
    length = end + tail;
    if (length > MAX_HEADER_LENGTH) {
        PyBuffer_Release(&body);
        PyErr_Format(PyExc_ValueError, "the sealed header is %zd bytes, over %d", length,
                     MAX_HEADER_LENGTH);
        return NULL;
    }
    result = PyBytes_FromStringAndSize(NULL, length);
    if (result == NULL) {
        PyBuffer_Release(&body);
        return NULL;
    }
    p = (unsigned char *)PyBytes_AS_STRING(result);
    p[0] = IPPROTO_NONE;
    p[1] = (unsigned char)(length / 8 - 1);
    p[2] = (unsigned char)mhType;
    p[3] = p[4] = p[5] = 0; /* reserved; the checksum, zero as the MAC covers it */
    memcpy(p + 6, body.buf, (size_t)body.len);
    PyBuffer_Release(&body);
    pad(p + position, before);
    p[position + before] = OPT_REPLAY_PROTECTION;
    p[position + before + 1] = 8;
    for (int b = 0; b < 8; b++)
        p[position + before + 2 + b] = (unsigned char)(timestamp >> (56 - 8 * b));
    pad(p + afterTimestamp, middle);
    at = afterTimestamp + middle;
    p[at] = OPT_AUTHENTICATION;
    p[at + 1] = (unsigned char)(5 + self->length);
    p[at + 2] = MN_HA;
    p[at + 3] = (unsigned char)(self->spi >> 24);
    p[at + 4] = (unsigned char)(self->spi >> 16);
    p[at + 5] = (unsigned char)(self->spi >> 8);
    p[at + 6] = (unsigned char)self->spi;
    authenticate(self, p, at + 7, 0, mac);
    memcpy(p + at + 7, mac, (size_t)self->length);
    pad(p + end, tail);
    return result;
}

/* open(data, now, window): for a header sealed as lmm.mh.encodeSealed lays it out
 * under this SA (its Authentication option last, ending the header, after Pad1 or
 * PadN(3) after the Replay Protection option), its MAC right and its timestamp within
 * window (NTP units) of now (seconds since 1970): (where the Replay Protection option
 * begins, its timestamp). None for anything else: lmm.security's general decode then
 * says what it is (this is its fast path, and decides nothing it does not). */
static PyObject *
Authenticator_open(Authenticator *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data;
    double now, seconds, whole;
    long long window, skew;
    unsigned long long timestamp = 0, clock;
    unsigned int spi;
    Py_ssize_t end, at, middle, rp, L = self->length;
    unsigned char mac[SHA256_DIGEST_LENGTH];
    const unsigned char *d;
    int ok = 0;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "open(data, now, window)");
        return NULL;
    }
    now = PyFloat_AsDouble(args[1]);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    window = PyLong_AsLongLong(args[2]);
    if (window == -1 && PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    d = data.buf;
    if (data.len < 8)
        goto done;
    end = ((Py_ssize_t)d[1] + 1) * 8;
    at = end - 7 - L;
    if (end > data.len || at < 6 + 10 + 1)
        goto done;
    /* The Replay Protection option at 8n+2 ends at 8n+12: the padding after it
     * to the Authentication option's 4n+1 is 1 or 5 bytes (mh._sealLayout). */
    middle = (at - 4) & 7;
    rp = at - middle - 10;
    if (middle == 1) {
        if (d[at - 1] != OPT_PAD1)
            goto done;
    } else if (middle == 5) {
        if (d[at - 5] != OPT_PADN || d[at - 4] != 3 || d[at - 3] || d[at - 2] || d[at - 1])
            goto done;
    } else {
        goto done;
    }
    if (rp < 6 || d[rp] != OPT_REPLAY_PROTECTION || d[rp + 1] != 8)
        goto done;
    spi = ((unsigned int)d[at + 3] << 24) | ((unsigned int)d[at + 4] << 16)
          | ((unsigned int)d[at + 5] << 8) | d[at + 6];
    if (d[at] != OPT_AUTHENTICATION || d[at + 1] != 5 + L || d[at + 2] != MN_HA
        || spi != self->spi)
        goto done;
    authenticate(self, d, at + 7, 1, mac);
    if (CRYPTO_memcmp(mac, d + at + 7, (size_t)L) != 0)
        goto done;
    for (int b = 0; b < 8; b++)
        timestamp = (timestamp << 8) | d[rp + 2 + b];
    /* lmm.security.ntpTimestamp(now), modulo 2**64 as NTP's eras are, and the
     * difference modulo 2**64 taken as signed (SignalingCodec._checkWindow). */
    seconds = now + NTP_EPOCH;
    if (!(seconds >= 0 && seconds < 18446744073709551616.0))
        goto done;
    whole = (double)(unsigned long long)seconds; /* floor: seconds is not negative */
    clock = ((unsigned long long)whole << 32)
            + (unsigned long long)((seconds - whole) * 4294967296.0);
    skew = (long long)(timestamp - clock);
    ok = -window <= skew && skew <= window;
done:
    PyBuffer_Release(&data);
    if (!ok)
        Py_RETURN_NONE;
    return Py_BuildValue("(nK)", rp, timestamp);
}

static PyMethodDef Authenticator_methods[] = {
    {"seal", (PyCFunction)(void (*)(void))Authenticator_seal, METH_FASTCALL,
     "seal(body, mhType, timestamp) -> bytes: lmm.mh.encodeSealed's header for the fixed"
     " part and options body."},
    {"open", (PyCFunction)(void (*)(void))Authenticator_open, METH_FASTCALL,
     "open(data, now, window) -> (offset, timestamp) or None: the sealed layout's fast"
     " path (lmm.security.SignalingCodec.decode)."},
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
    /* What the layout above repeats of lmm.mh (checked by lmm.security's tests). */
    if (PyModule_AddIntConstant(m, "REPLAY_PROTECTION", OPT_REPLAY_PROTECTION) < 0
        || PyModule_AddIntConstant(m, "AUTHENTICATION", OPT_AUTHENTICATION) < 0
        || PyModule_AddIntConstant(m, "MN_HA", MN_HA) < 0
        || PyModule_AddIntConstant(m, "IPPROTO_NONE", IPPROTO_NONE) < 0
        || PyModule_AddIntConstant(m, "MAX_HEADER_LENGTH", MAX_HEADER_LENGTH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&AuthenticatorType);
    if (PyModule_AddObject(m, "Authenticator", (PyObject *)&AuthenticatorType) < 0) {
        Py_DECREF(&AuthenticatorType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
