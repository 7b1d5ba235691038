/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * lane.h - one set of the buffers a collective call moves data through,
 * and the one door the collectives use to reach them: the node's shared
 * regions and fence, the inter-node transport and its regions, and the
 * lane's own communicator for collectives.  Every byte that leaves this
 * rank through a lane is accounted by link class.  (The collectives'
 * private buffers are the job context's: collectives/context.h.)
 *
 * A communication object has EPC_LANES lanes, and the context alternates
 * dispatches between them, so a dispatch can be in flight while the
 * previous one's combine is: each lane has its own communicator, regions,
 * fence counters and transport endpoint, so the messages and fences of
 * two requests in flight never meet, whatever order the ranks progress
 * them in.  The MPI collectives (count exchange, verdicts, flat's
 * exchange) go by kind instead: every dispatch's through lane 0's door,
 * every combine's through lane 1's (at most one of each is in flight).
 * (The node exchanges that grow a lane's regions travel on the control
 * communicator: only a dispatch grows regions, and at most one dispatch
 * is in flight.)
 */
#ifndef EPC_COMM_LANE_H
#define EPC_COMM_LANE_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "epcomm.h"
#include "mpi_util.h"
#include "shm.h"
#include "tr.h"

#define EPC_LANES 2

struct epc_comm;

typedef struct epc_lane {
    struct epc_comm *cm; /* owner: error texts, deadlines, byte counters */
    int index;
    MPI_Comm comm; /* a dup of the communication object's: this lane's collectives */
    epc_shm_t *shm;
    epc_tr_t *tr;
    int busy; /* requests using the lane now */
} epc_lane_t;

/* Creates lane `index` of cm (collective: communicator, node regions,
 * transport; each step bounded by cm's timeout), or frees what was made
 * (local; accepts a zeroed lane). */
epc_status_t epc_lane_create(struct epc_comm *cm, int index, epc_lane_t *ln);
void epc_lane_destroy(epc_lane_t *ln);

/* Shared memory: reserve (collective over the node), the region of local
 * rank lrank, the fence (collective over the node), and a bounds-checked,
 * accounted copy into local rank lrank's region at offset. */
epc_status_t epc_lane_shm_reserve(epc_lane_t *ln, size_t need, const char *phase);
char *epc_lane_shm_region(const epc_lane_t *ln, int lrank, size_t *cap);
epc_status_t epc_lane_shm_fence(epc_lane_t *ln, const char *phase);
void epc_lane_shm_touch(epc_lane_t *ln); /* epc_shm_touch of its regions */
epc_status_t epc_lane_shm_put(epc_lane_t *ln, int lrank, size_t offset, const void *src,
                              size_t len);

/* The same reserve and fence in steps, for schedules that must not block
 * on the node: reserve_begin publishes this rank's need and arrives at the
 * reserve's fence; once fence_test says every rank arrived, reserve_end
 * grows the regions if any rank must (node exchanges bounded by the
 * timeout).  fence_arrive/fence_test/fence_fail are
 * epc_shm_fence_arrive/_test/_fail on the lane's regions. */
epc_status_t epc_lane_reserve_begin(epc_lane_t *ln, size_t need, const char *phase,
                                    uint64_t *fence);
epc_status_t epc_lane_reserve_end(epc_lane_t *ln, size_t need, const char *phase);
epc_status_t epc_lane_fence_arrive(epc_lane_t *ln, const char *phase, uint64_t *fence);
int epc_lane_fence_test(const epc_lane_t *ln, uint64_t fence, int *missing);
epc_status_t epc_lane_fence_fail(epc_lane_t *ln, epc_status_t st, int missing, const char *phase);

/* The transport: grow its regions (local); the place of len bytes at
 * offset in the send or receive region (NULL when outside it, and
 * possibly for len 0 before the region first grew); one
 * exchange, whole (blocking, accounted), or in steps: post, test (drives
 * progress; *done), finish (completes by dl and frees the request, also
 * on failure; dl expired: cancels it).  Steps are accounted once, with
 * epc_lane_net_account, for the whole messages they cut into chunks. */
epc_status_t epc_lane_net_reserve(epc_lane_t *ln, size_t send, size_t recv);
char *epc_lane_net_send_at(const epc_lane_t *ln, size_t offset, size_t len);
const char *epc_lane_net_recv_at(const epc_lane_t *ln, size_t offset, size_t len);
epc_status_t epc_lane_net_exchange(epc_lane_t *ln, const epc_tr_msg_t *sends, int nsends,
                                   const epc_tr_msg_t *recvs, int nrecvs, const char *phase);
epc_status_t epc_lane_net_post(epc_lane_t *ln, const epc_tr_msg_t *sends, int nsends,
                               const epc_tr_msg_t *recvs, int nrecvs, const char *phase,
                               void **req);
epc_status_t epc_lane_net_test(epc_lane_t *ln, void *req, int *done);
epc_status_t epc_lane_net_finish(epc_lane_t *ln, void *req, epc_deadline_t dl);
/* Write exchanges (tr.h): expose the transport's receive region to peers'
 * writes (collective over the lane's transport; *exposed the same on every
 * rank, 0 where the transport has none or want is 0 anywhere), then post
 * write exchanges, completed by epc_lane_net_test/_finish. */
epc_status_t epc_lane_net_expose(epc_lane_t *ln, int want, int *exposed);
epc_status_t epc_lane_net_write_post(epc_lane_t *ln, const epc_tr_msg_t *sends, int nsends,
                                     const epc_tr_msg_t *recvs, int nrecvs, const char *phase,
                                     void **req);
/* 1 when receive i (its index in the posted list) of a posted exchange
 * completed: its bytes may be read before the whole exchange completes. */
int epc_lane_net_arrived(epc_lane_t *ln, void *req, int i);
/* Frees a posted exchange that will not be waited for (after a failure),
 * keeping the thread's last error. */
void epc_lane_net_cancel(epc_lane_t *ln, void *req);
void epc_lane_net_account(epc_lane_t *ln, const epc_tr_msg_t *sends, int nsends,
                          const epc_tr_msg_t *recvs, int nrecvs);

/* The collectives' MPI collectives, on the lane's communicator, through
 * the same door: the count exchange and the combine verdicts (allgather
 * of `count` ints from every rank into all[rank x count]) and flat's
 * exchange (alltoallv of `unit`-byte records, counts and displacements in
 * records).  Posting accounts every peer's share, sent and received, by
 * link class (control traffic included).  Test: *done = 1 once complete;
 * EPC_ERR_TRANSPORT raised naming `what` when MPI fails.  Pending: not
 * yet complete (a failed context's, given up on).  Free: the record type,
 * and the n heap blocks in bufs that the collective reads or writes, at
 * once when it completed, else once it does (epc_mpi_abandon: MPI can
 * neither cancel nor free a pending collective, and peers that took part
 * still deliver into it). */
typedef struct epc_lane_coll {
    MPI_Request req;
    MPI_Datatype type; /* alltoallv's record type, MPI_DATATYPE_NULL if none */
} epc_lane_coll_t;

void epc_lane_coll_init(epc_lane_coll_t *c);
epc_status_t epc_lane_allgather_post(epc_lane_t *ln, const int *mine, int count, int *all,
                                     epc_lane_coll_t *c, const char *what);
epc_status_t epc_lane_alltoallv_post(epc_lane_t *ln, const void *sbuf, const int *scnt,
                                     const int *sdsp, void *rbuf, const int *rcnt, const int *rdsp,
                                     size_t unit, epc_lane_coll_t *c, const char *what);
epc_status_t epc_lane_coll_test(epc_lane_t *ln, epc_lane_coll_t *c, int *done, const char *what);
int epc_lane_coll_pending(const epc_lane_coll_t *c);
void epc_lane_coll_free(epc_lane_coll_t *c, void *const *bufs, int n);

/* The cached dispatch's verdict (epc_mpi_agree_start/_test: the lowest
 * failing rank and its text) on the lane's communicator, through the same
 * door.  Accounted as each rank's logical share, whatever tree MPI uses:
 * its (flag, rank) pair to and from every peer at posting, and, when a
 * rank failed, the text from that rank to every other when the test
 * starts broadcasting it. */
epc_status_t epc_lane_agree_post(epc_lane_t *ln, epc_status_t local, epc_agree_t *ag);
epc_status_t epc_lane_agree_test(epc_lane_t *ln, epc_agree_t *ag, epc_deadline_t dl);

#endif
