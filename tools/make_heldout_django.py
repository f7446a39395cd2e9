#!/usr/bin/env python3
"""An out-of-distribution held-out text for the demo model: the Django 3.2 documentation
(Debian package python-django-doc, BSD-3-Clause), as plain text.

The demo corpus (tools/make_corpus.sh) holds only ~237k held-out tokens (val.txt: every 20th
document of the KJV Bible, the fortunes and the Python 3.11 documentation sources). For an
evaluation on more than a million tokens (issue 15's vpd compare protocol) this writes text
that none of the target, the decomposition or the transcoders saw and that is close in kind to
the Python documentation part of the corpus (technical English prose with code samples) — but
not the same distribution: CE on it is higher than on val.bin, and results on it are reported
as out-of-distribution beside the in-distribution val.bin ones.

Each page's main column (div class "yui-g") of html/**/*.html, minus the highlighted module
sources (_modules/), the indexes and the search page; tags stripped, entities unescaped, blank
lines squeezed; pages joined by a blank line in sorted path order.

usage: /usr/bin/python3 tools/make_heldout_django.py OUT.txt [--docs DIR]
then:  build/bin/vpd tokenize --tokenizer models/lm_4L_128/tokenizer.json OUT.txt --out OUT.bin
"""
import argparse
import glob
import html
import os
import re
import sys

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("out")
ap.add_argument("--docs", default="/usr/share/doc/python-django-doc/html")
a = ap.parse_args()
if not os.path.isdir(a.docs):
    sys.exit(f"make_heldout_django: {a.docs} not found: apt-get install python-django-doc")
skip = re.compile(r"/(_modules|_static|_images)/|/(genindex|search|py-modindex)\.html$")
start = re.compile(r'<div class="yui-g"[^>]*>')
end = re.compile(r'<div class="yui-b" id="sidebar"|<div id="ft"')
block = re.compile(r"</?(p|div|h[1-6]|li|pre|br|tr|dt|dd|table|ul|ol|blockquote)\b[^>]*>", re.I)
n_pages = 0
with open(a.out, "w", encoding="utf-8") as out:
    for f in sorted(glob.glob(os.path.join(a.docs, "**", "*.html"), recursive=True)):
        if skip.search(f):
            continue
        s = open(f, encoding="utf-8", errors="replace").read()
        m = start.search(s)
        if not m:
            continue
        e = end.search(s, m.end())
        body = s[m.end():e.start() if e else len(s)]
        body = re.sub(r"<(script|style)\b.*?</\1>", "", body, flags=re.S | re.I)
        body = block.sub("\n", body)
        body = html.unescape(re.sub(r"<[^>]+>", "", body)).replace("\u00b6", "")
        body = "\n".join(line.rstrip() for line in body.split("\n"))
        body = re.sub(r"\n{3,}", "\n\n", body).strip()
        if body:
            out.write(body + "\n\n")
            n_pages += 1
print(f"make_heldout_django: {n_pages} pages, {os.path.getsize(a.out)} bytes -> {a.out}")
