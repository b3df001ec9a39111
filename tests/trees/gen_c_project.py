#!/usr/bin/env python3
"""Generates C sources for the process-tree crash tests (issue 9). Deterministic: the same
arguments always write the same bytes.

    gen_c_project.py project DIR [MODULES [FUNCS]]
        A small C project built by `make -j2`: MODULES modules (mod00.c ...) of FUNCS
        functions each, util.c, main.c, a header, a table (tables.def) that the Makefile
        turns into tables.h with awk, a static library (ar) of the modules, and a `check`
        target that runs the program and prints its output and the sha256 of every object,
        the library and the program. `make -s -j2 check` prints only that.

    gen_c_project.py big FILE [FUNCS]
        One large C file (FUNCS functions and a dispatcher) for `gcc -O2 -c`.
"""

import os
import sys


def lcg(seed):
    x = seed
    while True:
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        yield x >> 33


def function(name, rng, calls=()):
    """A function with loops, a switch and arithmetic that -O2 has work to do on."""
    k = [next(rng) % 1000 + 1 for _ in range(8)]
    body = [
        f"unsigned long {name}(unsigned long x)",
        "{",
        "    unsigned long acc = x ^ %dUL;" % k[0],
        "    unsigned int i;",
        "    for (i = 0; i < %du; i++) {" % (k[1] % 50 + 10),
        "        switch ((acc >> 3) %% %du) {" % (k[2] % 5 + 3),
    ]
    for c in range(k[2] % 5 + 3):
        body.append(
            "        case %du: acc = acc * %dUL + (acc >> %d) + %du; break;"
            % (c, k[3] + c * 2 + 1, (k[4] + c) % 29 + 1, k[5] + c)
        )
    body += [
        "        default: acc ^= acc << %d; break;" % (k[6] % 13 + 1),
        "        }",
        "        if (acc & 1)",
        "            acc = (acc >> 1) ^ %dUL;" % (k[7] * 2654435761 % (1 << 31)),
        "    }",
    ]
    for callee in calls:
        body.append("    acc += %s(acc & 0xffff);" % callee)
    body += ["    return acc;", "}", ""]
    return "\n".join(body)


def write(path, text):
    with open(path, "w", encoding="ascii") as f:
        f.write(text)


def project(out, modules, funcs):
    os.makedirs(out, exist_ok=True)
    names = ["mod%02d" % m for m in range(modules)]
    header = [
        "#ifndef PROJECT_H",
        "#define PROJECT_H",
        "unsigned long util_mix(unsigned long a, unsigned long b);",
        "unsigned long util_table(unsigned int i);",
    ]
    for n in names:
        header.append("unsigned long %s_entry(unsigned long x);" % n)
    header += ["#endif", ""]
    write(os.path.join(out, "project.h"), "\n".join(header))

    # tables.def -> tables.h (by awk, in the Makefile).
    rng = lcg(99)
    write(
        os.path.join(out, "tables.def"),
        "".join("%d %d\n" % (i, next(rng) % 100000) for i in range(64)),
    )
    write(
        os.path.join(out, "gentables.awk"),
        'BEGIN { print "/* generated from tables.def */"; '
        'print "static const unsigned long table[] = {" }\n'
        '{ printf "    %dUL, /* %d */\\n", $2, $1 }\n'
        'END { print "};"; printf "#define TABLE_LEN %d\\n", NR }\n',
    )

    for m, n in enumerate(names):
        rng = lcg(1000 + m)
        src = ['#include "project.h"', '#include "tables.h"', ""]
        fn = []
        for f in range(funcs):
            fname = "%s_f%02d" % (n, f)
            src.append("static " + function(fname, rng, fn[-2:]))
            fn.append(fname)
        src += [
            "unsigned long %s_entry(unsigned long x)" % n,
            "{",
            "    unsigned long acc = util_table((unsigned int)x %% TABLE_LEN) + %dUL;" % m,
        ]
        for fname in fn:
            src.append("    acc = util_mix(acc, %s(acc + x));" % fname)
        src += ["    return acc;", "}", ""]
        write(os.path.join(out, n + ".c"), "\n".join(src))

    rng = lcg(7)
    write(
        os.path.join(out, "util.c"),
        "\n".join(
            [
                '#include "project.h"',
                '#include "tables.h"',
                "",
                "unsigned long util_mix(unsigned long a, unsigned long b)",
                "{",
                "    a ^= b + 0x9e3779b97f4a7c15UL + (a << 6) + (a >> 2);",
                "    return a * 0xff51afd7ed558ccdUL;",
                "}",
                "",
                "unsigned long util_table(unsigned int i)",
                "{",
                "    return table[i % TABLE_LEN];",
                "}",
                "",
                "static " + function("util_extra", rng),
                "unsigned long util_unused(unsigned long x) { return util_extra(x); }",
                "",
            ]
        ),
    )

    main = ['#include <stdio.h>', '#include "project.h"', "", "int main(void)", "{",
            "    unsigned long all = 0;"]
    for n in names:
        main += [
            "    {",
            "        unsigned long r = %s_entry(%dUL);" % (n, len(n) * 31),
            '        printf("%s %%016lx\\n", r);' % n,
            "        all = util_mix(all, r);",
            "    }",
        ]
    main += ['    printf("all %016lx\\n", all);', "    return 0;", "}", ""]
    write(os.path.join(out, "main.c"), "\n".join(main))

    objs = " ".join(n + ".o" for n in names)
    write(
        os.path.join(out, "Makefile"),
        "\n".join(
            [
                "# Generated by gen_c_project.py. `make -s -j2 check` builds and checks.",
                "CC = gcc",
                "CFLAGS = -O2 -Wall",
                "MODS = " + objs,
                "OBJS = main.o util.o $(MODS)",
                "",
                ".PHONY: all check",
                "all: prog",
                "",
                "tables.h: tables.def gentables.awk",
                "\tawk -f gentables.awk tables.def > tables.h.tmp",
                "\tmv tables.h.tmp tables.h",
                "",
                "%.o: %.c project.h tables.h",
                "\t$(CC) $(CFLAGS) -c $< -o $@",
                "",
                "libmods.a: $(MODS)",
                "\trm -f $@",
                "\tar rcD $@ $(MODS)",
                "",
                "prog: main.o util.o libmods.a",
                "\t$(CC) -o $@ main.o util.o libmods.a",
                "",
                "check: prog",
                "\t./prog > prog.out",
                "\tcat prog.out",
                "\tsha256sum $(OBJS) libmods.a prog | cut -c1-16,65-",
                "",
            ]
        ),
    )


def big(path, funcs):
    rng = lcg(4242)
    src = ["/* generated by gen_c_project.py big */", ""]
    names = []
    for f in range(funcs):
        name = "big_f%04d" % f
        src.append("static " + function(name, rng, names[-3:]))
        names.append(name)
    src += ["unsigned long big_dispatch(unsigned int which, unsigned long x)", "{",
            "    switch (which %% %d) {" % funcs]
    for i, n in enumerate(names):
        src.append("    case %d: return %s(x);" % (i, n))
    src += ["    }", "    return 0;", "}", ""]
    write(path, "\n".join(src))


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "project":
        modules = int(sys.argv[3]) if len(sys.argv) > 3 else 18
        funcs = int(sys.argv[4]) if len(sys.argv) > 4 else 12
        project(sys.argv[2], modules, funcs)
    elif len(sys.argv) >= 3 and sys.argv[1] == "big":
        big(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 180)
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
