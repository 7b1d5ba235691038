/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * handle.c - the handle a dispatch leaves for its combine: made by the
 * plan, checked and used by the entry points, freed by the caller.  Its own
 * module, so the plan and the entry points both depend on it and not on
 * each other.
 */
#include <stdlib.h>

#include "coll.h"

epc_status_t coll_handle_new(epc_ctx_t *ctx, const epc_dispatch_args_t *a, epc_algo_t algo,
                             epc_handle_t **hp)
{
    epc_handle_t *h = calloc(1, sizeof *h);
    if (h == NULL)
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "epc_dispatch: handle");
    h->hdr.magic = EPC_MAGIC_HANDLE;
    h->ctx = ctx;
    h->algo = algo;
    h->T = a ? a->num_tokens : 0;
    h->k = a ? a->topk : 0;
    h->align = a && a->expert_alignment > 1 ? a->expert_alignment : 1;
    h->fp8 = a && a->payload != EPC_PAYLOAD_NATIVE;
    h->row_bytes = h->fp8 ? coll_fp8_row_bytes(ctx->hidden) : coll_row_bytes(ctx);
    h->E = ctx->num_experts;
    h->R = ctx->comm.nranks;
    h->N = ctx->comm.topo->nnodes;
    h->L = ctx->comm.topo->uniform_rpn;
    h->epr = h->E / h->R;
    h->dims = (coll_dims_t){
        h->E, h->N, h->R, h->epr, h->k, h->align, ctx->max_tokens, ctx->comm.topo->node_of};
    *hp = h;
    return EPC_OK;
}

int coll_handle_owned(const epc_ctx_t *ctx, const epc_handle_t *h)
{
    return h != NULL && h->hdr.magic == EPC_MAGIC_HANDLE && h->ctx == ctx;
}

void epc_handle_destroy(epc_handle_t *h)
{
    if (h == NULL || h->hdr.magic != EPC_MAGIC_HANDLE)
        return;
    h->hdr.magic = EPC_MAGIC_DEAD;
    free(h->idx);
    free(h->w);
    free(h->eidx);
    free(h->didx);
    free(h->all);
    free(h->Ts);
    free(h->num_rows);
    free(h->begin);
    free(h->prefix);
    free(h->expert_count);
    free(h->kept);
    free(h);
}
