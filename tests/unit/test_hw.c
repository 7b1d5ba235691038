/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_hw - hwloc discovery on topologies that are not this machine, so the
 * answers are known: the hand-made DGX-class XML (tests/data/dgx8.xml) and
 * synthetic topologies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "hw.h"

static char xml_path[4096];

static epc_hw_t *load_dgx(void)
{
    epc_hw_t *hw = NULL;
    assert_int_equal(epc_hw_load(xml_path, NULL, &hw), EPC_OK);
    assert_non_null(hw);
    return hw;
}

static void test_dgx_summary(void **state)
{
    epc_hw_t *hw = load_dgx();
    epc_hw_summary_t s;
    (void)state;
    assert_int_equal(epc_hw_is_thissystem(hw), 0);
    assert_non_null(strstr(epc_hw_source(hw), "dgx8.xml"));
    epc_hw_summary(hw, &s);
    assert_int_equal(s.packages, 2);
    assert_int_equal(s.numa_nodes, 2);
    assert_int_equal(s.cores, 16);
    assert_int_equal(s.pus, 16);
    /* One name per PCI function (cuda over nvml, mlx5 over ib); card0 is a
     * display, not a GPU. */
    assert_string_equal(s.gpus, "cuda0,cuda1,cuda2,cuda3,cuda4,cuda5,cuda6,cuda7");
    assert_string_equal(s.nics, "eno1,mlx5_0,mlx5_1,mlx5_2,mlx5_3,mlx5_4,mlx5_5,mlx5_6,mlx5_7");
    epc_hw_free(hw);
}

/* Locality of an explicit CPU list ("0", "8-9", "6-9"). */
static void locality_of(epc_hw_t *hw, const char *cpus, epc_hw_locality_t *loc)
{
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    assert_int_equal(hwloc_bitmap_list_sscanf(set, cpus), 0);
    assert_int_equal(epc_hw_locality(hw, set, loc), EPC_OK);
    hwloc_bitmap_free(set);
}

static void test_dgx_nearest(void **state)
{
    epc_hw_t *hw = load_dgx();
    epc_hw_locality_t loc;
    (void)state;
    locality_of(hw, "0", &loc);
    assert_string_equal(loc.cpuset, "0");
    assert_int_equal(loc.package, 0);
    assert_int_equal(loc.numa, 0);
    assert_int_equal(loc.cores, 1);
    assert_string_equal(loc.gpus, "cuda0,cuda1,cuda2,cuda3");
    assert_string_equal(loc.nics, "eno1,mlx5_0,mlx5_1,mlx5_2,mlx5_3");

    locality_of(hw, "8-9", &loc);
    assert_int_equal(loc.package, 1);
    assert_int_equal(loc.numa, 1);
    assert_int_equal(loc.cores, 2);
    assert_string_equal(loc.gpus, "cuda4,cuda5,cuda6,cuda7");
    assert_string_equal(loc.nics, "mlx5_4,mlx5_5,mlx5_6,mlx5_7");

    /* Straddling both packages: everything is equally near. */
    locality_of(hw, "6-9", &loc);
    assert_int_equal(loc.package, -1);
    assert_int_equal(loc.numa, -1);
    assert_int_equal(loc.cores, 4);
    assert_string_equal(loc.gpus, "cuda0,cuda1,cuda2,cuda3,cuda4,cuda5,cuda6,cuda7");
    epc_hw_free(hw);
}

/* n ranks on the XML node: CPU blocks, then one GPU and NIC each. */
static void assign_n(epc_hw_t *hw, int n, epc_hw_locality_t *loc, char (*gpu)[EPC_HW_NAME_MAX],
                     char (*nic)[EPC_HW_NAME_MAX])
{
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    for (int i = 0; i < n; i++) {
        int bound = 0;
        assert_int_equal(epc_hw_rank_cpuset(hw, i, n, set, &bound), EPC_OK);
        assert_int_equal(bound, 1);
        assert_int_equal(epc_hw_locality(hw, set, &loc[i]), EPC_OK);
    }
    hwloc_bitmap_free(set);
    assert_int_equal(epc_hw_assign(hw, loc, n, gpu, nic), EPC_OK);
}

static void test_dgx_assign_8(void **state)
{
    epc_hw_t *hw = load_dgx();
    epc_hw_locality_t loc[8];
    char gpu[8][EPC_HW_NAME_MAX], nic[8][EPC_HW_NAME_MAX], want[32];
    (void)state;
    assign_n(hw, 8, loc, gpu, nic);
    for (int i = 0; i < 8; i++) {
        snprintf(want, sizeof want, "%d-%d", 2 * i, 2 * i + 1);
        assert_string_equal(loc[i].cpuset, want);
        snprintf(want, sizeof want, "cuda%d", i);
        assert_string_equal(gpu[i], want);
        /* The NIC under the same leaf switch as the GPU (GPUDirect pairing). */
        snprintf(want, sizeof want, "mlx5_%d", i);
        assert_string_equal(nic[i], want);
    }
    epc_hw_free(hw);
}

static void test_dgx_assign_16_and_4(void **state)
{
    epc_hw_t *hw = load_dgx();
    epc_hw_locality_t loc[16];
    char gpu[16][EPC_HW_NAME_MAX], nic[16][EPC_HW_NAME_MAX];
    static const char *const want4[] = {"cuda0", "cuda1", "cuda4", "cuda5"};
    char want[32];
    (void)state;
    /* Two ranks per GPU: each package's GPUs are taken in turn. */
    assign_n(hw, 16, loc, gpu, nic);
    for (int i = 0; i < 16; i++) {
        snprintf(want, sizeof want, "cuda%d", (i / 8) * 4 + (i % 8) % 4);
        assert_string_equal(gpu[i], want);
        snprintf(want, sizeof want, "mlx5_%d", (i / 8) * 4 + (i % 8) % 4);
        assert_string_equal(nic[i], want);
    }
    assign_n(hw, 4, loc, gpu, nic);
    for (int i = 0; i < 4; i++)
        assert_string_equal(gpu[i], want4[i]);
    epc_hw_free(hw);
}

static void test_synthetic(void **state)
{
    epc_hw_t *hw = NULL;
    epc_hw_locality_t loc[3];
    char gpu[3][EPC_HW_NAME_MAX], nic[3][EPC_HW_NAME_MAX];
    epc_hw_summary_t s;
    (void)state;
    assert_int_equal(epc_hw_load(NULL, "pack:2 numa:1 core:4 pu:2", &hw), EPC_OK);
    assert_int_equal(epc_hw_is_thissystem(hw), 0);
    epc_hw_summary(hw, &s);
    assert_int_equal(s.packages, 2);
    assert_int_equal(s.numa_nodes, 2);
    assert_int_equal(s.cores, 8);
    assert_int_equal(s.pus, 16);
    assert_string_equal(s.nics, "");
    assert_string_equal(s.gpus, "");
    /* 16 PUs over 3 ranks: blocks 0-4, 5-9, 10-15; no devices to assign. */
    assign_n(hw, 3, loc, gpu, nic);
    assert_string_equal(loc[0].cpuset, "0-4");
    assert_string_equal(loc[1].cpuset, "5-9");
    assert_string_equal(loc[2].cpuset, "10-15");
    assert_int_equal(loc[0].package, 0);
    assert_int_equal(loc[0].cores, 3);
    assert_int_equal(loc[1].package, -1); /* spans both packages */
    assert_int_equal(loc[2].numa, 1);
    assert_string_equal(gpu[0], "");
    assert_string_equal(nic[2], "");
    epc_hw_free(hw);
}

static void test_more_ranks_than_pus(void **state)
{
    epc_hw_t *hw = NULL;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    int bound;
    char buf[64];
    (void)state;
    assert_int_equal(epc_hw_load(NULL, "pack:1 core:2 pu:1", &hw), EPC_OK);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(epc_hw_rank_cpuset(hw, i, 5, set, &bound), EPC_OK);
        hwloc_bitmap_list_snprintf(buf, sizeof buf, set);
        assert_int_equal(hwloc_bitmap_weight(set), 1); /* at least one PU each */
        assert_int_equal(atoi(buf), i * 2 / 5);
    }
    assert_int_equal(epc_hw_rank_cpuset(hw, 5, 5, set, &bound), EPC_ERR_INTERNAL);
    hwloc_bitmap_free(set);
    epc_hw_free(hw);
}

static void test_env_overrides(void **state)
{
    epc_hw_t *hw = NULL;
    epc_hw_summary_t s;
    (void)state;
    setenv("HWLOC_SYNTHETIC", "pack:3 core:1 pu:1", 1);
    assert_int_equal(epc_hw_load(NULL, NULL, &hw), EPC_OK);
    epc_hw_summary(hw, &s);
    assert_int_equal(s.packages, 3);
    assert_non_null(strstr(epc_hw_source(hw), "HWLOC_SYNTHETIC"));
    epc_hw_free(hw);
    unsetenv("HWLOC_SYNTHETIC");
    setenv("HWLOC_XMLFILE", xml_path, 1);
    assert_int_equal(epc_hw_load(NULL, NULL, &hw), EPC_OK);
    epc_hw_summary(hw, &s);
    assert_int_equal(s.cores, 16);
    assert_non_null(strstr(epc_hw_source(hw), "HWLOC_XMLFILE"));
    epc_hw_free(hw);
    unsetenv("HWLOC_XMLFILE");
}

static void test_bad_sources(void **state)
{
    epc_hw_t *hw = (epc_hw_t *)0x1;
    (void)state;
    assert_int_equal(epc_hw_load("/nonexistent/topo.xml", NULL, &hw), EPC_ERR_TOPOLOGY);
    assert_ptr_equal(hw, (epc_hw_t *)0x1); /* untouched on failure */
    assert_non_null(strstr(epc_last_error(NULL), "/nonexistent/topo.xml"));
    assert_int_equal(epc_hw_load(NULL, "pack:banana", &hw), EPC_ERR_TOPOLOGY);
    assert_non_null(strstr(epc_last_error(NULL), "pack:banana"));
    epc_hw_free(NULL);
}

int main(void)
{
    const char *dir = getenv("top_srcdir");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dgx_summary),   cmocka_unit_test(test_dgx_nearest),
        cmocka_unit_test(test_dgx_assign_8),  cmocka_unit_test(test_dgx_assign_16_and_4),
        cmocka_unit_test(test_synthetic),     cmocka_unit_test(test_more_ranks_than_pus),
        cmocka_unit_test(test_env_overrides), cmocka_unit_test(test_bad_sources),
    };
    snprintf(xml_path, sizeof xml_path, "%s/tests/data/dgx8.xml", dir ? dir : ".");
    unsetenv("HWLOC_SYNTHETIC");
    unsetenv("HWLOC_XMLFILE");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
