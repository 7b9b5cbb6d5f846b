#!/usr/bin/env python3
"""Extracts every ```cpp block of README.md and docs/*.md into a translation unit, so that CTest
compiles each one (tests/CMakeLists.txt, docs.snippets_*). Python standard library only.

The line right before a block may hold a marker (docs/extending.md, "Snippets in the docs"):

  (no marker)                     a whole program or translation unit, compiled as written
  <!-- snippet: program PRELUDE --> the same after tests/snippets/PRELUDE.hpp (names the text assumes)
  <!-- snippet: body PRELUDE -->  statements: wrapped in a function after tests/snippets/PRELUDE.hpp,
                                  which declares the names the text assumes (field, x, ctx, ...);
                                  the block's #include lines go to the top of the file
  <!-- snippet: partial REASON --> deliberately not compilable (a signature, an elided body); the
                                  reason is required and printed
  <!-- snippet: excerpt FILE -->  lines copied from FILE (a program that CTest builds and runs):
                                  --check-excerpts checks that FILE holds them, in order, verbatim

A block whose prelude is a CUDA one (its name starts with cuda) is written as a .cu file.

  extract.py --source DIR --check-excerpts   exit 1 naming every excerpt its file no longer holds
  extract.py --source DIR --out DIR   writes the files and prints 'prelude|file|origin' lines
                                      (prelude 'none' or 'partial')
"""
import argparse
import pathlib
import re
import sys

MARKER = re.compile(r"^<!--\s*snippet:\s*(\w+)\s*(.*?)\s*-->\s*$")


def blocks(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() in ("```cpp", "```c++"):
            marker = lines[i - 1] if i > 0 else ""
            start = i + 1
            j = start
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            if j == len(lines):
                sys.exit(f"{path}:{i + 1}: unterminated ```cpp block")
            yield start, marker, lines[start:j]
            i = j
        i += 1


def documents(source):
    return [source / "README.md"] + sorted((source / "docs").glob("*.md"))


def check_excerpts(source):
    failures, count = [], 0
    for doc in documents(source):
        for line, marker, body in blocks(doc):
            m = MARKER.match(marker.strip())
            if not m or m.group(1) != "excerpt":
                continue
            count += 1
            text = (source / m.group(2)).read_text(encoding="utf-8")
            if "\n".join(body) not in text:
                failures.append(f"{doc.relative_to(source)}:{line}: the block is no longer a verbatim excerpt of {m.group(2)}")
    for f in failures:
        print(f)
    print(f"{count - len(failures)} of {count} excerpts found verbatim in their files")
    return 1 if failures or count == 0 else 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True, type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path)
    parser.add_argument("--check-excerpts", action="store_true")
    args = parser.parse_args()
    if args.check_excerpts:
        return check_excerpts(args.source)
    if args.out is None:
        parser.error("--out DIR or --check-excerpts is required")
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("snippet_*"):
        old.unlink()
    docs = documents(args.source)
    preludes = args.source / "tests" / "snippets"
    for doc in docs:
        rel = doc.relative_to(args.source)
        for line, marker, body in blocks(doc):
            origin = f"{rel}:{line}"
            stem = "snippet_" + re.sub(r"[^A-Za-z0-9]+", "_", f"{rel.stem}_{line}")
            m = MARKER.match(marker.strip())
            kind, arg = (m.group(1), m.group(2)) if m else ("program", "")
            where = f'#line {line + 1} "{doc}"\n'
            if kind == "excerpt":
                if not (args.source / arg).is_file():
                    sys.exit(f"{origin}: the excerpt's file '{arg}' does not exist")
                print(f"excerpt|-|{origin} ({arg})")
                continue
            if kind == "partial":
                if not arg:
                    sys.exit(f"{origin}: a partial snippet must say why (<!-- snippet: partial REASON -->)")
                print(f"partial|-|{origin} ({arg})")
                continue
            if kind in ("program", "body") and arg and not (preludes / f"{arg}.hpp").is_file():
                sys.exit(f"{origin}: prelude '{arg}' not found (expected tests/snippets/{arg}.hpp)")
            ext = "cu" if arg.startswith("cuda") else "cpp"
            if kind == "program":
                text = (f'#include "{(preludes / arg).as_posix()}.hpp"\n' if arg else "") + where + "\n".join(body) + "\n"
            elif kind == "body":
                if not arg:
                    sys.exit(f"{origin}: a body snippet needs a prelude (<!-- snippet: body PRELUDE -->)")
                includes = [b for b in body if b.startswith("#include")]
                rest = [("" if b.startswith("#include") else b) for b in body]
                text = (f'#include "{(preludes / arg).as_posix()}.hpp"\n' + "\n".join(includes) +
                        f"\nvoid {stem}() {{\n" + where + "\n".join(rest) + "\n}\n")
            else:
                sys.exit(f"{origin}: unknown snippet kind '{kind}' (expected body or partial, or no marker)")
            out = args.out / f"{stem}.{ext}"
            out.write_text(text, encoding="utf-8")
            print(f"{arg or 'none'}|{out.as_posix()}|{origin}")


if __name__ == "__main__":
    sys.exit(main())
