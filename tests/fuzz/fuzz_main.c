/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * fuzz_main - runs the fuzz harness without libFuzzer: every file named on
 * the command line (or in a named directory), then N pseudo-random inputs
 * (-n N, fixed seed), so `make check` exercises it with any compiler.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    static uint8_t buf[1 << 16];
    FILE *f = fopen(path, "rb");
    size_t n;
    if (f == NULL) {
        perror(path);
        return 1;
    }
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    return 0;
}

static int run_path(const char *path, int *count)
{
    struct stat st;
    DIR *d;
    struct dirent *e;
    char sub[4096];
    int rc = 0;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return (*count)++, run_file(path);
    if ((d = opendir(path)) == NULL)
        return perror(path), 1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') {
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rc |= run_path(sub, count);
        }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    uint64_t x = 0x2545f4914f6cdd1dull;
    uint8_t buf[4096];
    int n = 0, files = 0, rc = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc)
            n = atoi(argv[++i]);
        else
            rc |= run_path(argv[i], &files);
    }
    for (int i = 0; i < n; i++) {
        size_t len = 12 + (size_t)(i * 37 % 600);
        for (size_t b = 0; b < len; b++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[b] = (uint8_t)x;
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf("fuzz_main: %d corpus files and %d random inputs ran without a failed invariant\n",
           files, n);
    return rc;
}
