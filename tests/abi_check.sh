#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# The library's ABI table (epc_abi_table, printed by `epc_info --abi`) must
# list every struct of include/epcomm.h with exactly its fields, in order,
# at increasing offsets inside the struct's size; and EPC_ABI_VERSION must
# be both what the library reports and libtool's `current` in Makefile.am.
# Bindings check their struct mirrors against this table, so a field
# missing here would be a field they cannot check.
set -e
: "${top_srcdir:=.}" "${top_builddir:=.}"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$top_builddir/examples/epc_info" --abi >"$out"
python3 - "$top_srcdir/include/epcomm.h" "$top_srcdir/Makefile.am" "$out" <<'PY'
import re, sys
header, makefile, table = (open(p).read() for p in sys.argv[1:4])
fails = []
want = {}
for m in re.finditer(r'typedef struct (epc_\w+) \{\n(.*?)\n\} (epc_\w+_t);', header, re.S):
    body = re.sub(r'/\*.*?\*/', '', m.group(2), flags=re.S)
    names = []
    for stmt in body.split(';'):
        stmt = re.sub(r'\s+', ' ', stmt.strip())
        for decl in filter(None, stmt.split(',') if stmt else []):
            names.append(re.search(r'(\w+)(\[[^\]]*\])?$', decl.strip()).group(1))
    want[m.group(3)] = names
lines = table.splitlines()
abi = int(lines[0].split()[2])
got, sizes = {}, {}
for line in lines[1:]:
    t, f, off, size = line.split()
    if f == '-':
        sizes[t] = int(size)
        got.setdefault(t, [])
    else:
        got.setdefault(t, []).append((f, int(off), int(size)))
for t, names in want.items():
    if t not in got:
        fails.append(f'{t}: not in the table')
        continue
    if [f for f, _, _ in got[t]] != names:
        fails.append(f'{t}: table fields {[f for f, _, _ in got[t]]}, header {names}')
    end = 0
    for f, off, size in got[t]:
        if off < end or off + size > sizes.get(t, 0):
            fails.append(f'{t}.{f}: offset {off} size {size} overlaps or leaves sizeof {sizes.get(t)}')
        end = off + size
for t in got:
    if t not in want:
        fails.append(f'{t}: in the table, not in the header')
hv = int(re.search(r'#define EPC_ABI_VERSION (\d+)', header).group(1))
lt = int(re.search(r'-version-info (\d+):', makefile).group(1))
if not abi == hv == lt:
    fails.append(f'ABI versions differ: library {abi}, header {hv}, libtool current {lt}')
for f in fails:
    print('FAIL:', f)
print(f'abi_check: {len(want)} structs, {sum(map(len, want.values()))} fields, '
      f'abi {abi}: {len(fails)} failures')
sys.exit(1 if fails else 0)
PY
