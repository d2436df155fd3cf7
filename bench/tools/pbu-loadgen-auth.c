/* pbu-loadgen-auth: ../shared/tools/pbu-loadgen, extended to sign what it sends the way
 * lmm.security does (RFC 4285, docs/security.md): every PBU ends with a Replay Protection
 * option (type 10, 8n+2, the sending time as a 64-bit NTP timestamp) and an Authentication
 * option (type 9, 4n+1 taken as 8n+1 so that nothing follows it, as lmm.mh.encodeSealed
 * lays it out; subtype 1 MN-HA, SPI, HMAC-SHA256 truncated to 16 bytes over
 * LOCAL address | TARGET address | the header up to and including the SPI, checksum zero).
 * What the LMAP answers is counted as the original tool counts it; the answers' own
 * authenticators are not checked (the generator measures the responder, not itself).
 * The HMAC's keyed inner and outer states are computed once (RFC 2104): OpenSSL 3's
 * one-shot HMAC() fetches its algorithm at every call, which made this generator,
 * not the LMAP, the bottleneck.
 * KEYHEX "-": the same PBUs unsigned (no Replay Protection, no Authentication), for the
 * comparison with and without authentication from one generator. It still builds and
 * signs each PBU as it would be sent signed, under a zero key, and throws that away:
 * the generator's own work is the same in both runs, so that a generator working
 * harder beside the responder is not part of what the comparison measures.
 * Unlike the original, it never sleeps in poll() when its window is full: a sleeping
 * generator is woken by every answer, and the responder pays for the wakeup in its
 * sendto (measured: about 5 us an answer, more than the authentication itself costs).
 * WARM 1: first one PBU for each of the NAIS, untimed and not counted (the responder's
 * bindings made), then the SECONDS measured: refreshes only, whatever the rate. Without it a
 * short run of a slower responder is mostly new bindings, a faster one's mostly refreshes.
 * A line "measuring: ..." (flushed) says when the measured run starts.
 * usage: pbu-loadgen-auth TARGET LOCAL SPI KEYHEX SECONDS WINDOW NAIS [RATE [ADDR_TYPE PREFIX
 *        [WARM]]]
 * Output: the same two kinds of line as pbu-loadgen. */
#include <arpa/inet.h>
#include <netinet/in.h>
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_CTX: a struct copy per MAC, no provider fetch */
#include <openssl/sha.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
static unsigned long long ntp(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    unsigned long long s = (unsigned long long)t.tv_sec + 2208988800ULL;
    unsigned long long f = ((unsigned long long)t.tv_nsec << 32) / 1000000000ULL;
    return (s << 32) | f;
}
static int cmp(const void *a, const void *b) {
    double x = *(double *)a, y = *(double *)b;
    return x < y ? -1 : x > y;
}
/* Padding so that the next option's type byte sits at an offset y mod x. */
static int pad(unsigned char *pkt, int off, int x, int y) {
    int n = ((y - off) % x + x) % x;
    if (n == 1) pkt[off] = 0;
    else if (n > 1) { pkt[off] = 1; pkt[off + 1] = n - 2; memset(pkt + off + 2, 0, n - 2); }
    return off + n;
}

/* The PBU in pkt (its options up to off) made signed in place: the Replay Protection
 * option with the time now, the Authentication option under spi (its MAC from the keyed
 * states inner0 and outer0 over data: the two addresses, then the header), the fixed
 * part with sequence number seq. Returns the header's length. */
static int seal(unsigned char *pkt, int off, unsigned short seq, unsigned long spi,
                unsigned char *data, const SHA256_CTX *inner0, const SHA256_CTX *outer0) {
    unsigned char mac[SHA256_DIGEST_LENGTH];
    SHA256_CTX ctx;
    off = pad(pkt, off, 8, 2);                          /* Replay Protection, 8n+2 */
    unsigned long long ts = ntp();
    pkt[off] = 10; pkt[off + 1] = 8;
    for (int b = 0; b < 8; b++) pkt[off + 2 + b] = (ts >> (56 - 8 * b)) & 255;
    off += 10;
    off = pad(pkt, off, 8, 1); /* Authentication, 4n+1: at 8n+1 it ends the header, as lmm puts it */
    pkt[off] = 9; pkt[off + 1] = 1 + 4 + 16; pkt[off + 2] = 1;
    pkt[off + 3] = spi >> 24; pkt[off + 4] = spi >> 16; pkt[off + 5] = spi >> 8; pkt[off + 6] = spi;
    int spiEnd = off + 7, total = (spiEnd + 16 + 7) & ~7;
    pkt[0] = 59; pkt[1] = total / 8 - 1; pkt[2] = 5;
    pkt[6] = seq >> 8; pkt[7] = seq & 255; pkt[8] = 0x82; pkt[9] = 0x00; /* A and P */
    pkt[10] = 0; pkt[11] = 100;                                          /* 400 s */
    memcpy(data + 32, pkt, spiEnd);  /* the checksum (4, 5) is zero here */
    ctx = *inner0; SHA256_Update(&ctx, data, 32 + spiEnd); SHA256_Final(mac, &ctx);
    ctx = *outer0; SHA256_Update(&ctx, mac, sizeof mac); SHA256_Final(mac, &ctx);
    memcpy(pkt + spiEnd, mac, 16);
    pad(pkt, spiEnd + 16, 8, 0);
    return total;
}

int main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr, "usage: pbu-loadgen-auth TARGET LOCAL SPI KEYHEX SECONDS WINDOW NAIS "
                        "[RATE [ADDR_TYPE PREFIX]]\n");
        return 2;
    }
    struct sockaddr_in6 to = {.sin6_family = AF_INET6}, me = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET6, argv[1], &to.sin6_addr) != 1 || inet_pton(AF_INET6, argv[2], &me.sin6_addr) != 1) {
        fprintf(stderr, "bad TARGET or LOCAL\n");
        return 2;
    }
    unsigned long spi = strtoul(argv[3], 0, 10);
    unsigned char key[128];
    int sign = strcmp(argv[4], "-") != 0;
    int keylen = sign ? (int)strlen(argv[4]) / 2 : 16;
    if (keylen < 16 || keylen > (int)sizeof key) { fprintf(stderr, "bad KEYHEX\n"); return 2; }
    memset(key, 0, sizeof key);
    for (int i = 0; sign && i < keylen; i++) sscanf(argv[4] + 2 * i, "%2hhx", &key[i]);
    double dur = atof(argv[5]);
    int window = atoi(argv[6]);
    long nais = atol(argv[7]);
    double rate = argc > 8 ? atof(argv[8]) : 0;
    int atype = argc > 10 ? atoi(argv[9]) : 0;
    int warming = argc > 11 && atoi(argv[11]) != 0;
    struct in6_addr prefix;
    memset(&prefix, 0, sizeof prefix);
    if (atype > 0 && inet_pton(AF_INET6, argv[10], &prefix) != 1) { fprintf(stderr, "bad PREFIX\n"); return 2; }
    long bystatus[256];
    memset(bystatus, 0, sizeof bystatus);
    int s = socket(AF_INET6, SOCK_RAW, 135);
    if (s < 0) { perror("socket"); return 1; }
    if (bind(s, (struct sockaddr *)&me, sizeof me) < 0) { perror("bind"); return 1; }
    int rcv = 1 << 22;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    static double sent_at[65536];
    static unsigned char pending[65536];
    double *lat = malloc(sizeof(double) * 20000000);
    long nl = 0;
    unsigned short seq = 0;
    long sent = 0, got = 0, outstanding = 0, idx = 0;
    double t0 = now(), end = t0 + dur, warmLimit = t0 + 60;
    unsigned char pkt[192], scratch[192], data[32 + 192], kpad[64];
    SHA256_CTX inner0, outer0;
    if (keylen > 64) { fprintf(stderr, "KEYHEX: at most 64 bytes\n"); return 2; }
    memset(kpad, 0x36, 64); for (int i = 0; i < keylen; i++) kpad[i] ^= key[i];
    SHA256_Init(&inner0); SHA256_Update(&inner0, kpad, 64);
    memset(kpad, 0x5c, 64); for (int i = 0; i < keylen; i++) kpad[i] ^= key[i];
    SHA256_Init(&outer0); SHA256_Update(&outer0, kpad, 64);
    memcpy(data, &me.sin6_addr, 16);  /* the MPA's address first, then the LMAP's */
    memcpy(data + 16, &to.sin6_addr, 16);
    while (warming || now() < end) {
        double t = now();
        if (warming && idx >= nais && (outstanding == 0 || t > warmLimit)) {
            /* every NAI sent once and answered (or given up on): the measured run starts */
            warming = 0;
            printf("measuring: %ld bindings made (%ld answered) in %.2f s\n", nais, got, t - t0);
            fflush(stdout);
            sent = got = nl = outstanding = 0;
            memset(bystatus, 0, sizeof bystatus);
            memset(pending, 0, sizeof pending);
            t0 = t = now();
            end = t0 + dur;
        }
        int cansend = !(warming && idx >= nais) && outstanding < window
                      && (rate <= 0 || sent < (t - t0) * rate);
        if (cansend) {
            long i = idx++ % nais;
            char nai[40];
            int n = snprintf(nai, sizeof nai, "ms%08ld@lmm.test", i);
            memset(pkt, 0, sizeof pkt);
            int off = 12;
            if (atype > 0) { /* at offset 12 = 8n+4, the HNP alignment */
                pkt[off] = atype; pkt[off + 1] = 18; pkt[off + 2] = 0; pkt[off + 3] = 64;
                memcpy(pkt + off + 4, &prefix, 8);
                unsigned long long iid = i + 1;
                for (int b = 0; b < 8; b++) pkt[off + 4 + 15 - b] = (iid >> (8 * b)) & 255;
                off += 20;
            }
            pkt[off] = 8; pkt[off + 1] = 1 + n; pkt[off + 2] = 1; memcpy(pkt + off + 3, nai, n);
            off += 3 + n;
            if (!sign) {
                memcpy(scratch, pkt, sizeof pkt);  /* the same work as signed, discarded */
                seal(scratch, off, seq, spi, data, &inner0, &outer0);
                int total = (off + 7) & ~7;
                pad(pkt, off, 8, 0);
                pkt[0] = 59; pkt[1] = total / 8 - 1; pkt[2] = 5;
                pkt[6] = seq >> 8; pkt[7] = seq & 255; pkt[8] = 0x82; pkt[9] = 0x00;
                pkt[10] = 0; pkt[11] = 100;
                sendto(s, pkt, total, 0, (struct sockaddr *)&to, sizeof to);
                sent_at[seq] = t; pending[seq] = 1; seq++; sent++; outstanding++;
                goto receive;
            }
            int total = seal(pkt, off, seq, spi, data, &inner0, &outer0);
            sendto(s, pkt, total, 0, (struct sockaddr *)&to, sizeof to);
            sent_at[seq] = t; pending[seq] = 1; seq++; sent++; outstanding++;
        }
    receive:;
        struct pollfd p = {s, POLLIN, 0};
        if (poll(&p, 1, 0) > 0) {
            unsigned char in[256];
            ssize_t r;
            while ((r = recv(s, in, sizeof in, MSG_DONTWAIT)) > 0) {
                if (r < 12 || in[2] != 6) continue;
                unsigned short q = (in[8] << 8) | in[9];
                if (pending[q]) {
                    pending[q] = 0; got++; outstanding--; bystatus[in[6]]++;
                    if (nl < 20000000) lat[nl++] = now() - sent_at[q];
                }
            }
        }
    }
    double el = now() - t0;
    qsort(lat, nl, sizeof(double), cmp);
    printf("sent %ld answered %ld in %.2f s: %.0f PBA/s; latency p50 %.3f ms p99 %.3f ms\n", sent, got, el,
           got / el, nl ? lat[nl / 2] * 1e3 : 0, nl ? lat[(long)(nl * 0.99)] * 1e3 : 0);
    for (int k = 0; k < 256; k++)
        if (bystatus[k]) printf("status %d: %ld\n", k, bystatus[k]);
    return 0;
}
