/* SPDX-License-Identifier: BSD-3-Clause */
/* mpi_util.c - MPI error conversion and failure agreement. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "mpi_util.h"

epc_status_t epc_mpi_error(epc_obj_t *obj, int mpi_rc, const char *call)
{
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (MPI_Error_string(mpi_rc, msg, &len) != MPI_SUCCESS)
        strcpy(msg, "unknown MPI error");
    return epc_error_obj(obj, EPC_ERR_TRANSPORT, "%s failed: %s (code %d)", call, msg, mpi_rc);
}

epc_status_t epc_mpi_test_one(MPI_Request *req, epc_deadline_t dl, epc_obj_t *obj, const char *what)
{
    int done = 0, rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
    epc_status_t st;
    if (rc != MPI_SUCCESS)
        return epc_mpi_error(obj, rc, what);
    if (done)
        return EPC_OK;
    st = epc_deadline_check(dl);
    /* A collective request can be neither cancelled nor freed (MPI-3.1
     * 5.12): after a timeout it is abandoned, and the caller fails. */
    if (st == EPC_ERR_TIMEOUT)
        return epc_error_obj(obj, EPC_ERR_TIMEOUT,
                             "%s: not every rank took part within the timeout (a rank stopped, "
                             "failed before it, or called another collective)",
                             what);
    if (st != EPC_OK) /* interrupted: a peer aborted */
        return epc_error_context(obj, st, "%s", what);
    return EPC_IN_PROGRESS;
}

epc_status_t epc_mpi_finish(int rc, MPI_Request *req, epc_deadline_t dl, epc_obj_t *obj,
                            const char *what)
{
    epc_status_t st;
    if (rc != MPI_SUCCESS)
        return epc_mpi_error(obj, rc, what);
    while ((st = epc_mpi_test_one(req, dl, obj, what)) == EPC_IN_PROGRESS)
        sched_yield();
    return st;
}

epc_status_t epc_mpi_compare(MPI_Comm comm, const double *v, int n, epc_deadline_t dl,
                             epc_obj_t *obj, const char *what, int *differs, double *lo, double *hi)
{
    double in[2 * EPC_MPI_COMPARE_MAX], out[2 * EPC_MPI_COMPARE_MAX];
    MPI_Request req;
    epc_status_t st;
    int rc;
    *differs = -1;
    if (n < 0 || n > EPC_MPI_COMPARE_MAX)
        return epc_error_obj(obj, EPC_ERR_INTERNAL, "%s: %d values to compare", what, n);
    /* max of v and of -v: one allreduce gives both ends of each range */
    for (int i = 0; i < n; i++) {
        in[2 * i] = v[i];
        in[2 * i + 1] = -v[i];
    }
    rc = MPI_Iallreduce(in, out, 2 * n, MPI_DOUBLE, MPI_MAX, comm, &req);
    if ((st = epc_mpi_finish(rc, &req, dl, obj, what)) != EPC_OK)
        return st;
    for (int i = 0; i < n && *differs < 0; i++)
        if (out[2 * i] != -out[2 * i + 1]) {
            *differs = i;
            if (lo != NULL)
                *lo = -out[2 * i + 1];
            if (hi != NULL)
                *hi = out[2 * i];
        }
    return EPC_OK;
}

epc_status_t epc_mpi_agree_start(epc_agree_t *ag, MPI_Comm comm, epc_status_t local, epc_obj_t *obj)
{
    int rc;
    memset(ag, 0, sizeof *ag);
    ag->req = MPI_REQUEST_NULL;
    ag->comm = comm;
    ag->obj = obj;
    ag->local = local;
    MPI_Comm_rank(comm, &ag->me);
    /* (0, rank) for a failure, (1, rank) for success: MINLOC finds the
     * lowest failing rank, whatever the failures' kinds. */
    ag->in[0] = local < 0 ? 0 : 1;
    ag->in[1] = ag->me;
    rc = MPI_Iallreduce(ag->in, ag->out, 1, MPI_2INT, MPI_MINLOC, comm, &ag->req);
    if (rc != MPI_SUCCESS)
        ag->req = MPI_REQUEST_NULL;
    return rc == MPI_SUCCESS ? EPC_OK : epc_mpi_error(obj, rc, "error agreement");
}

epc_status_t epc_mpi_agree_test(epc_agree_t *ag, epc_deadline_t dl)
{
    int rc;
    epc_status_t st = epc_mpi_test_one(&ag->req, dl, ag->obj,
                                       ag->reason ? "error agreement (reason)" : "error agreement");
    if (st != EPC_OK)
        return st;
    if (!ag->reason) {
        if (ag->out[0] == 1)
            return EPC_OK;
        /* The failure's text travels to everyone, so each rank's message
         * says what went wrong where, not just that something did. */
        if (ag->me == ag->out[1])
            strncpy(ag->text, epc_last_error(NULL), sizeof ag->text - 1);
        ag->reason = 1;
        rc = MPI_Ibcast(ag->text, (int)sizeof ag->text, MPI_CHAR, ag->out[1], ag->comm, &ag->req);
        return rc == MPI_SUCCESS ? EPC_IN_PROGRESS
                                 : epc_mpi_error(ag->obj, rc, "error agreement (reason)");
    }
    ag->text[sizeof ag->text - 1] = '\0';
    if (ag->local < 0) { /* a failing rank keeps its own status and text */
        epc_error_sync(ag->obj);
        return ag->local;
    }
    return epc_error_quiet(ag->obj, EPC_ERR_PEER_FAILED, "rank %d: %s", ag->out[1], ag->text);
}

epc_status_t epc_mpi_agree(MPI_Comm comm, epc_status_t local, epc_obj_t *obj, epc_deadline_t dl)
{
    /* On the heap: after a timeout MPI may still write the verdict */
    epc_agree_t *ag = malloc(sizeof *ag);
    epc_status_t st;
    if (ag == NULL)
        return epc_error_obj(obj, EPC_ERR_NO_MEMORY, "error agreement");
    if ((st = epc_mpi_agree_start(ag, comm, local, obj)) == EPC_OK)
        while ((st = epc_mpi_agree_test(ag, dl)) == EPC_IN_PROGRESS)
            sched_yield();
    epc_mpi_abandon(&ag->req, (void *[]){ag}, 1);
    return st;
}

epc_status_t epc_mpi_dup(MPI_Comm comm, MPI_Comm *dup)
{
    MPI_Request req;
    int rc = MPI_Comm_idup(comm, dup, &req);
    /* Non-blocking with a deadline: the first collective of every creation,
     * so a rank that never arrives is a timeout, not a hang. */
    epc_status_t st = epc_mpi_finish(rc, &req, epc_mpi_default_deadline(), NULL,
                                     "MPI_Comm_idup (creating a communicator)");
    if (st != EPC_OK)
        return st;
    rc = MPI_Comm_set_errhandler(*dup, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) {
        MPI_Comm_free(dup);
        return epc_mpi_error(NULL, rc, "MPI_Comm_set_errhandler");
    }
    return EPC_OK;
}

epc_deadline_t epc_mpi_default_deadline(void)
{
    const epc_config_t *cfg;
    (void)epc_config_get_quiet(&cfg); /* invalid values were reported already */
    return epc_deadline_in_ms((long)epc_cfg_int(cfg, EPC_CFG_TIMEOUT_MS));
}

epc_status_t epc_mpi_wait_all(MPI_Request *reqs, int n, epc_deadline_t dl, int *pending,
                              const char *what)
{
    epc_status_t st;
    for (;;) {
        int done = 0, rc = MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS)
            return epc_mpi_error(NULL, rc, what);
        if (done)
            return EPC_OK;
        if ((st = epc_deadline_check(dl)) != EPC_OK) {
            *pending = 0; /* the first incomplete one: what the caller waited for */
            for (int i = 0; i < n; i++) {
                int flag = 0;
                if (reqs[i] != MPI_REQUEST_NULL)
                    MPI_Test(&reqs[i], &flag, MPI_STATUS_IGNORE);
                if (reqs[i] != MPI_REQUEST_NULL) {
                    *pending = i;
                    break;
                }
            }
            return st; /* EPC_ERR_TIMEOUT, or the interrupt's (raised by it) */
        }
        sched_yield();
    }
}

void epc_mpi_cancel_all(MPI_Request *reqs, int n)
{
    for (int i = 0; i < n; i++) {
        if (reqs[i] == MPI_REQUEST_NULL)
            continue;
        MPI_Cancel(&reqs[i]);
        MPI_Request_free(&reqs[i]);
    }
}

epc_status_t epc_mpi_barrier(MPI_Comm comm, epc_deadline_t dl, const char *phase, epc_obj_t *obj)
{
    MPI_Request req;
    int rc = MPI_Ibarrier(comm, &req);
    return epc_mpi_finish(rc, &req, dl, obj, phase);
}

/* The collectives given up on, with the blocks they may still touch. */
typedef struct abandoned {
    struct abandoned *next;
    MPI_Request req;
    void *bufs[EPC_MPI_ABANDON_BUFS];
} abandoned_t;

static pthread_mutex_t g_abandoned_lock = PTHREAD_MUTEX_INITIALIZER;
static abandoned_t *g_abandoned;

static void free_blocks(void *const *bufs, int n)
{
    for (int i = 0; i < n; i++)
        free(bufs[i]);
}

/* Frees the entries whose collective completed (none once MPI is
 * finalised: then nothing can be tested, and nothing will be written). */
static void sweep_abandoned(void)
{
    int finalized = 0;
    MPI_Finalized(&finalized);
    for (abandoned_t **p = &g_abandoned; *p != NULL && !finalized;) {
        abandoned_t *a = *p;
        int done = 0;
        if (MPI_Test(&a->req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || !done) {
            p = &a->next;
            continue;
        }
        *p = a->next;
        free_blocks(a->bufs, EPC_MPI_ABANDON_BUFS);
        free(a);
    }
}

void epc_mpi_abandon(MPI_Request *req, void *const *bufs, int n)
{
    MPI_Request pending = *req;
    abandoned_t *a;
    *req = MPI_REQUEST_NULL; /* first: req may lie in one of the blocks */
    pthread_mutex_lock(&g_abandoned_lock);
    sweep_abandoned();
    if (pending == MPI_REQUEST_NULL) {
        free_blocks(bufs, n);
    } else if ((a = calloc(1, sizeof *a)) != NULL) {
        a->req = pending;
        memcpy(a->bufs, bufs, (size_t)n * sizeof *bufs);
        a->next = g_abandoned;
        g_abandoned = a;
    } /* else: no memory to remember them by; leaking them is the safe choice */
    pthread_mutex_unlock(&g_abandoned_lock);
}
