/* vpd_json_strn (src/io/json_write.c): escapes, well-formed UTF-8 passed through, every
 * ill-formed byte (a lone continuation byte, a truncated sequence — a BPE token's half of a
 * multi-byte character —, overlong forms, surrogates, > U+10FFFF) written as \ufffd. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"
#include "vpd/io.h"

static char *render(const char *s, size_t n) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    vpd_json_strn(f, s, n);
    fclose(f);
    return buf;
}

static void expect(const char *in, size_t n, const char *want, const char *what) {
    char *got = render(in, n);
    CHECK(!strcmp(got, want), "%s: got %s, want %s", what, got, want);
    free(got);
}

int main(void) {
    expect("a\"b\\c\n\t\r\x01", 9, "\"a\\\"b\\\\c\\n\\t\\r\\u0001\"", "escapes");
    expect("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", "valid UTF-8");
    expect("\xe2\x82", 2, "\"\\ufffd\\ufffd\"", "truncated 3-byte sequence (a token's partial character)");
    expect("\x82\xac!", 3, "\"\\ufffd\\ufffd!\"", "lone continuation bytes");
    expect("\xc0\xaf", 2, "\"\\ufffd\\ufffd\"", "overlong 2-byte");
    expect("\xe0\x80\xaf", 3, "\"\\ufffd\\ufffd\\ufffd\"", "overlong 3-byte");
    expect("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\"", "surrogate U+D800");
    expect("\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\"", "above U+10FFFF");
    expect("\xff", 1, "\"\\ufffd\"", "0xFF");
    expect("\xc3\xa9\xc3", 3, "\"\xc3\xa9\\ufffd\"", "valid then truncated at the end");
    /* NUL-terminated form; NULL is "" */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    vpd_json_str(f, NULL);
    vpd_json_str(f, "x");
    fclose(f);
    CHECK(!strcmp(buf, "\"\"\"x\""), "vpd_json_str: %s", buf);
    free(buf);
    TEST_REPORT();
}
