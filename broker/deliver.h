/* deliver.h - the broker's delivery scheduler: queued entries to recipients, acks, replays. */
#ifndef IHALA_DELIVER_H
#define IHALA_DELIVER_H

#include <stdint.h>

#include "server_int.h"

/* The delivery state of agency `id`, made on first use (NULL when out of memory). Owned by
 * sv->agencies until the server ends. */
struct agency_rt *agency_rt_get(struct server *sv, const char *id);
/* Send queued entries to the agency's session while the credit window and output allow. */
void agency_pump(struct server *sv, struct agency_rt *a);
/* A DeliveryAck from `s`: frees its credit, and is gathered for the writer. */
void handle_ack(struct server *sv, struct session *s, uint64_t seq);
/* Hand the session's gathered acks to the writer (one request for all of them). */
void acks_send(struct server *sv, struct session *s);
/* Send an auditor's replay onwards while its output allows (follow: as commits come). */
void replay_pump(struct server *sv, struct session *s);
/* End the session's replay, if any (no frame sent). */
void replay_stop(struct server *sv, struct session *s);

#endif
