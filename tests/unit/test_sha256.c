/* SHA-256 against the FIPS 180-2 / NIST example vectors ("abc", the 448-bit message,
 * one million 'a'), the empty string, every split point of the streaming interface, and
 * a file digest. */
#include <stdio.h>

#include "testutil.h"
#include "vpd/sha256.h"

int main(void) {
    char hex[65];
    vpd_sha256_hex("abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "abc: %s", hex);
    vpd_sha256_hex("", 0, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "empty: %s", hex);
    const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    vpd_sha256_hex(m2, strlen(m2), hex);
    CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"), "448-bit: %s", hex);
    const char *m4 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    vpd_sha256_hex(m4, strlen(m4), hex);
    CHECK(!strcmp(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"), "896-bit: %s", hex);
    /* one million 'a', fed in uneven pieces */
    static char a[1000000];
    memset(a, 'a', sizeof a);
    vpd_sha256_ctx c;
    uint8_t d[32];
    vpd_sha256_init(&c);
    size_t off = 0, piece = 1;
    while (off < sizeof a) {
        size_t n = sizeof a - off < piece ? sizeof a - off : piece;
        vpd_sha256_update(&c, a + off, n);
        off += n;
        piece = piece * 3 % 997 + 1;
    }
    vpd_sha256_final(&c, d);
    CHECK(d[0] == 0xcd && d[1] == 0xc7 && d[31] == 0xd0, "million a: %02x%02x..%02x", d[0], d[1], d[31]);
    char ref[65];
    vpd_sha256_hex(a, sizeof a, ref);
    CHECK(!strcmp(ref, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "million a: %s", ref);
    /* every split of a 130-byte message equals the one-shot digest */
    char msg[130];
    for (int i = 0; i < 130; i++) msg[i] = (char)(i * 7 + 1);
    vpd_sha256_hex(msg, sizeof msg, ref);
    int bad = 0;
    for (size_t s = 0; s <= sizeof msg; s++) {
        vpd_sha256_init(&c);
        vpd_sha256_update(&c, msg, s);
        vpd_sha256_update(&c, msg + s, sizeof msg - s);
        vpd_sha256_final(&c, d);
        char h2[65];
        for (int i = 0; i < 32; i++) snprintf(h2 + 2 * i, 3, "%02x", d[i]);
        bad += strcmp(h2, ref) != 0;
    }
    CHECK(bad == 0, "%d split points disagree", bad);
    FILE *f = fopen("sha256_test.txt", "wb");
    CHECK(f != NULL, "cannot write sha256_test.txt");
    if (f) {
        fwrite("abc", 1, 3, f);
        fclose(f);
        CHECK(vpd_sha256_file("sha256_test.txt", hex) == VPD_OK && !strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "file: %s", hex);
        remove("sha256_test.txt");
    }
    CHECK(vpd_sha256_file("no/such/file", hex) == VPD_ERR_IO, "missing file must be VPD_ERR_IO");
    TEST_REPORT();
}
